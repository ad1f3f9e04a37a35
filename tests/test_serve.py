"""The HTTP API of ``tvscript serve`` against the tiny trained model (FastAPI TestClient)."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from fastapi.testclient import TestClient

import tvscript
from conftest import ServerThread
from tvscript.serve import Limits, create_app
from tvscript.serve.app import test_perplexity as _test_perplexity  # not a test: rename on import

SMALL = {"max_new_tokens": 30, "temperature": 0.9}


@pytest.fixture(scope="module")
def model(tiny_run):
    return tvscript.load(tiny_run)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model)) as c:
        yield c


def parse_sse(body: str) -> list[tuple[str, dict]]:
    """Split an event stream into (event, data) pairs, checking the framing as it goes."""
    assert body.endswith("\n\n"), "every event ends with a blank line"
    events = []
    for block in body.split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) == {"event", "data"}, block
        events.append((fields["event"], json.loads(fields["data"])))
    return events


TURN = re.compile(r"^[^\W_][^:()\[\]\"]{0,39}?( \([^()]*\))?: \S")


# -- read-only endpoints ---------------------------------------------------------------------

def test_health(client, model):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": model.name}


def test_model_info(client, model):
    info = client.get("/api/model").json()
    assert info["name"] == model.name
    assert info["speakers"] == model.speakers() and "jerry" in info["speakers"]
    assert info["vocab_size"] == len(model.vocab)
    assert info["config"]["model"]["vocab_size"] == len(model.vocab)
    assert "data" not in info["config"]["train"]  # no server paths
    assert "perplexity" in info["metrics"]
    assert info["test_perplexity"] is None  # the tiny run has only validation metrics
    assert info["limits"]["max_new_tokens"] == 1000


def test_test_perplexity_lookup():
    assert _test_perplexity({}) is None
    assert _test_perplexity({"metrics": {"perplexity": 50.0}}) is None  # validation, not test
    assert _test_perplexity({"test": {"split": "test", "perplexity": 61.5}}) == 61.5
    assert _test_perplexity({"test": "61.5"}) is None


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>tvscript</title>" in page.text and "/static/app.js" in page.text
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert client.get("/static/..%2Fapp.py").status_code == 404
    assert client.get("/static/nope.js").status_code == 404


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/generate", "/api/stream", "/api/model", "/health"} <= set(schema["paths"])
    props = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert props["max_new_tokens"]["maximum"] == 1000
    assert props["num_return_sequences"]["maximum"] == 8


# -- /api/generate ---------------------------------------------------------------------------

def test_generate(client):
    r = client.post("/api/generate", json={"prime": "jerry", **SMALL, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "texts", "turns", "seed"}
    assert body["seed"] == 7 and body["texts"] == [body["text"]]
    assert body["text"].startswith("jerry:")
    assert body["turns"][0]["speaker"] == "jerry"
    assert all(TURN.match(line) for line in body["text"].splitlines() if line.strip())


def test_generate_is_seeded(client, model):
    request = {"prime": "george:", **SMALL, "seed": 1234, "num_return_sequences": 3}
    first, second = (client.post("/api/generate", json=request).json() for _ in range(2))
    assert first == second and len(first["texts"]) == 3
    assert first["texts"] == model.generate_batch(**request).texts  # what the library gives for that seed
    other = client.post("/api/generate", json={**request, "seed": 1235}).json()
    assert other["texts"] != first["texts"]


def test_random_seed_is_returned_and_replays(client):
    first = client.post("/api/generate", json=SMALL).json()
    assert 0 <= first["seed"] < 2**53  # JavaScript clients can send it back exactly
    again = client.post("/api/generate", json={**SMALL, "seed": first["seed"]}).json()
    assert again["text"] == first["text"]


def test_cast_and_no_self_reply(client):
    r = client.post("/api/generate", json={"prime": "jerry:", "max_new_tokens": 60, "seed": 3,
                                           "cast": ["george", "Elaine"], "no_self_reply": True})
    assert r.status_code == 200, r.text
    turns = r.json()["turns"]
    assert {t["speaker"] for t in turns[1:]} <= {"george", "elaine"}
    speakers = [t["speaker"] for t in turns]
    assert all(a != b for a, b in zip(speakers, speakers[1:]))


@pytest.mark.parametrize("field,value,words", [
    ("max_new_tokens", 1001, "max_new_tokens"),
    ("max_new_tokens", 0, "max_new_tokens"),
    ("num_return_sequences", 9, "num_return_sequences"),
    ("temperature", -1, "temperature"),
    ("top_p", 0, "top_p"),
    ("top_p", 1.5, "top_p"),
    ("top_k", 0, "top_k"),
    ("repetition_penalty", 0, "repetition_penalty"),
    ("self_reply_penalty", -1, "self_reply_penalty"),
    ("self_reply_penalty", 101, "self_reply_penalty"),
    ("seed", -1, "seed"),
    ("seed", 2**63, "seed"),
    ("max_lines", 0, "max_lines"),
    ("prime", "x" * 2001, "prime"),
    ("cast", "jerry", "cast"),
    ("max_tokens", 10, "max_tokens: Extra inputs are not permitted"),
])
def test_out_of_range_is_422(client, field, value, words):
    for path in ("/api/generate", "/api/stream"):
        r = client.post(path, json={field: value})
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and words in detail


def test_bad_json_is_422(client):
    r = client.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_unknown_field_with_a_newline_is_a_one_line_422(client):
    r = client.post("/api/generate", json={"top\np": 0.5})
    assert r.status_code == 422
    assert r.json()["detail"] == "top\\np: Extra inputs are not permitted"  # escaped: still one line


@pytest.mark.parametrize("request_body,words", [
    ({"cast": ["jerry", "batman"]}, "unknown cast member(s): batman"),
    ({"prime": "zzqx blorf"}, "none of the prime's words"),
])
def test_library_errors_are_422_with_their_message(client, request_body, words):
    for path in ("/api/generate", "/api/stream"):
        r = client.post(path, json={**SMALL, **request_body})
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"]
        assert "Traceback" not in r.text


def test_body_size_is_bounded(client):
    r = client.post("/api/generate", content=b"{" + b" " * 40_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_busy_server_answers_503(model):
    app = create_app(model, Limits(max_concurrency=1, max_queue=0))
    with TestClient(app) as c:
        app.state.runner.in_flight = 1  # as if one generation were running
        for path in ("/api/generate", "/api/stream"):
            r = c.post(path, json=SMALL)
            assert r.status_code == 503 and "busy" in r.json()["detail"]
        app.state.runner.in_flight = 0
        assert c.post("/api/generate", json=SMALL).status_code == 200


def test_time_limit(model):
    with TestClient(create_app(model, Limits(request_timeout_s=1e-9))) as c:
        r = c.post("/api/generate", json={"max_new_tokens": 1000, "seed": 1})
        assert r.status_code == 504 and "limit" in r.json()["detail"]
        events = parse_sse(c.post("/api/stream", json={"max_new_tokens": 1000, "seed": 1}).text)
        assert events[-1][0] == "error" and "limit" in events[-1][1]["detail"]
        assert "done" not in [e for e, _ in events]
        assert c.get("/health").status_code == 200  # still serving


def test_concurrent_requests_do_not_share_state(client, model):
    seeds = [11, 12, 13, 14]
    expected = {s: model.generate("kramer:", max_new_tokens=40, seed=s) for s in seeds}
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            path = "/api/stream" if seed % 2 else "/api/generate"
            r = client.post(path, json={"prime": "kramer:", "max_new_tokens": 40, "seed": seed})
            results[seed] = (parse_sse(r.text)[-1][1]["texts"][0] if path == "/api/stream" else r.json()["text"])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == expected


# -- /api/stream -----------------------------------------------------------------------------

def test_stream_framing_and_done(client):
    r = client.post("/api/stream", json={"prime": "elaine", **SMALL, "seed": 99})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"piece"} and len(kinds) > 5
    pieces = "".join(data["text"] for kind, data in events if kind == "piece")
    done = events[-1][1]
    assert done["seed"] == 99
    assert done["texts"][0] == pieces.rstrip("\n") + "\n"
    assert done["fountain"][0].startswith("ELAINE")
    # the stream and the JSON endpoint agree for a seed
    assert client.post("/api/generate", json={"prime": "elaine", **SMALL, "seed": 99}).json()["text"] == done["texts"][0]


def test_stream_several_sequences(client):
    events = parse_sse(client.post("/api/stream", json={**SMALL, "seed": 5, "num_return_sequences": 2}).text)
    indexes = {data["index"] for kind, data in events if kind == "piece"}
    assert indexes == {0, 1}
    done = events[-1][1]
    for i in (0, 1):
        text = "".join(d["text"] for k, d in events if k == "piece" and d["index"] == i)
        assert done["texts"][i] == text.rstrip("\n") + "\n"


# -- the CLI ---------------------------------------------------------------------------------

def test_cli_serve_reports_a_taken_port(tiny_run, capsys):
    import socket

    from tvscript.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tiny_run), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_cli_serve_rejects_bad_port(capsys):
    from tvscript.cli import main

    try:
        code = main(["serve", "--port", "70000"])
    except SystemExit as exit_:  # argparse's exit, where main lets it through
        code = exit_.code
    assert code == 2 and "must be <= 65535" in capsys.readouterr().err


# -- a real server: a client that goes away stops its generation ----------------------------

def test_disconnect_stops_the_generation(tiny_run):
    import httpx

    model = tvscript.load(tiny_run)
    made = []
    real_pieces = model.pieces

    def slow_pieces(ids, config):  # 10 ms a word: 1000 words would take 10 s
        for item in real_pieces(ids, config):
            made.append(item)
            time.sleep(0.01)
            yield item

    model.pieces = slow_pieces
    app = create_app(model, Limits(max_concurrency=1, max_queue=0))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("POST", "/api/stream", json={"max_new_tokens": 1000, "seed": 1}) as r:
            assert r.status_code == 200
            for n, _ in enumerate(r.iter_lines()):
                if n > 10:
                    break  # hang up mid-scene
        deadline = time.monotonic() + 5
        while app.state.runner.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.runner.in_flight == 0
        assert len(made) < 300  # stopped long before the 1000 words
        assert http.post("/api/generate", json=SMALL).status_code == 200  # the slot is free again
