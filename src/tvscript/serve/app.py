"""The FastAPI app behind ``tvscript serve``: ``create_app(model, limits) -> FastAPI``.

Routes::

    GET  /               the single-page UI (static files from package resources)
    GET  /health         liveness: {"status": "ok", "model": name}
    GET  /api/model      name, speakers, vocab size, config, metrics, defaults, limits
    POST /api/generate   JSON in, {"text", "texts", "turns", "seed"} out
    POST /api/stream     the same JSON in, server-sent events out: ``piece`` ... ``done``
    GET  /docs           OpenAPI docs

Safety and concurrency:

* the model is shared read-only (eval mode, no gradients); each request gets its own
  sampling generator, LSTM state and script-form state inside ``ScriptModel.pieces``;
* generation runs on a small dedicated thread pool, never on the event loop, at most
  ``limits.max_concurrency`` at a time with at most ``limits.max_queue`` waiting; past
  that the server answers 503 at once rather than piling up work;
* every generation has a time limit (``limits.request_timeout_s``, counted from when it
  starts running); past it the JSON endpoint answers 504 and the stream ends with an
  ``error`` event; a client that disconnects stops its generation;
* request bodies are bounded (413), parameters are bounded by pydantic (422 with a
  one-line ``detail``), and the library's ``TvscriptError`` (unknown cast or prime words)
  becomes a 422 with its own message. Nothing in a request is ever used as a file path.
"""

# No "from __future__ import annotations": FastAPI must see the real request model, which
# is a class made per app (its bounds come from the limits), not a module-level name.
import asyncio
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..api import ScriptModel
from ..errors import TvscriptError
from ..formats import to_fountain, turns_of
from ..generate import MAX_SELF_REPLY_PENALTY, GenerationConfig

log = logging.getLogger("tvscript.serve")

# JavaScript numbers are exact only below 2**53: seeds the server draws stay below that so
# the page can send a seed back and get the same scene again.
JS_SAFE_SEED_BITS = 53

STATIC_FILES = {  # the whole static site, read once at start-up; requests only pick a key
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for and on the server's work."""

    max_new_tokens: int = 1000
    max_lines: int = 500
    max_prime_chars: int = 2000
    max_return_sequences: int = 8
    max_cast: int = 50
    max_body_bytes: int = 32 * 1024
    request_timeout_s: float = 30.0
    max_concurrency: int = 2
    max_queue: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "max_queue" and not value > 0:
                raise TvscriptError(f"server limit {name} must be > 0, got {value}")
        if self.max_queue < 0:
            raise TvscriptError(f"server limit max_queue must be >= 0, got {self.max_queue}")


class GenerationTimeout(Exception):
    """A generation ran past the per-request time limit."""


# -- request and response models -------------------------------------------------------------

def _request_model(limits: Limits) -> type[BaseModel]:
    """The request body, bounded by these limits (so /docs shows the real bounds)."""
    d = GenerationConfig()

    class GenerateRequest(BaseModel):
        """Generation options; the names and meanings are those of ``tvscript generate``."""

        # A misspelt option is an error, not ignored; strict: true is not a seed, "5" is not a count.
        model_config = ConfigDict(extra="forbid", strict=True)

        prime: str = Field("jerry:", max_length=limits.max_prime_chars,
                           description="a character name (\"jerry\") or opening text (\"jerry: hello.\")")
        max_new_tokens: int = Field(d.max_new_tokens, ge=1, le=limits.max_new_tokens, description="words to generate")
        max_lines: int | None = Field(None, ge=1, le=limits.max_lines, description="stop after this many lines")
        temperature: float = Field(d.temperature, ge=0, le=5, allow_inf_nan=False)
        top_k: int | None = Field(d.top_k, ge=1, le=1_000_000)
        top_p: float = Field(d.top_p, gt=0, le=1, allow_inf_nan=False)
        repetition_penalty: float = Field(d.repetition_penalty, gt=0, le=10, allow_inf_nan=False)
        num_return_sequences: int = Field(1, ge=1, le=limits.max_return_sequences)
        seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same script; omit for a random one")
        cast: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(None, max_length=limits.max_cast,
                                       description="only these speakers, e.g. [\"jerry\", \"george\"]")
        self_reply_penalty: float = Field(d.self_reply_penalty, ge=0, le=MAX_SELF_REPLY_PENALTY, allow_inf_nan=False,
                                          description="logit cut that makes a speaker answering themselves rarer")
        no_self_reply: bool = Field(d.no_self_reply, description="a speaker never answers themselves")
        structured: bool = Field(d.structured, description="keep the script form (turns start with a speaker)")

    return GenerateRequest


class Turn(BaseModel):
    speaker: str | None
    text: str


class GenerateResponse(BaseModel):
    text: str = Field(description="the first script (prime included)")
    texts: list[str] = Field(description="one script per returned sequence")
    turns: list[Turn] = Field(description="the first script as turns")
    seed: int = Field(description="the seed used; send it back to get the same scripts")


# -- helpers ---------------------------------------------------------------------------------

def test_perplexity(meta: dict[str, Any]) -> float | None:
    """The test-split perplexity recorded with the model (config.json's "test": what
    `tvscript evaluate --json` printed), if any."""
    value = (meta.get("test") or {}).get("perplexity") if isinstance(meta.get("test"), dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if not loc and err.get("type") == "missing":
            parts.append("the request needs a JSON body: an object of options ({} for the defaults)")
            continue
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    message = "; ".join(parts) or "invalid request"
    # Field names come from the client and may hold newlines: escaped, the message stays one line.
    return message if message.isprintable() else json.dumps(message)[1:-1]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; json.dumps escapes newlines, so data is always one line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class BodyLimit:
    """ASGI middleware: refuse request bodies over max_bytes with 413 (declared or streamed)."""

    class TooLarge(HTTPException):
        """An HTTPException, so FastAPI's body parsing re-raises it (any other error there becomes a 400)."""

        def __init__(self, max_bytes: int):
            super().__init__(413, f"request body too large (limit {max_bytes} bytes)")

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyLimit.TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyLimit.TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps({"detail": f"request body too large (limit {self.max_bytes} bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Runner:
    """Runs generations on a bounded thread pool; admission is decided on the event loop."""

    def __init__(self, model: ScriptModel, limits: Limits):
        self.model, self.limits = model, limits
        self.executor: ThreadPoolExecutor | None = None
        self.in_flight = 0  # running + queued; only touched on the event loop
        self.closing = threading.Event()  # set at shutdown: running generations stop

    def start(self) -> None:
        if self.executor is None:
            self.closing.clear()
            self.executor = ThreadPoolExecutor(self.limits.max_concurrency, thread_name_prefix="tvscript-generate")

    def stop(self) -> None:
        self.closing.set()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    def check_capacity(self) -> None:
        if self.in_flight >= self.limits.max_concurrency + self.limits.max_queue:
            raise HTTPException(503, "the server is busy; try again in a moment", headers={"Retry-After": "2"})

    def submit(self, ids: list[int], config: GenerationConfig, emit: Callable[[int, str], None],
               stop: threading.Event) -> asyncio.Future:
        """Start one generation; emit(index, piece) is called on the worker thread."""
        self.check_capacity()
        self.start()
        future = asyncio.get_running_loop().run_in_executor(self.executor, self._run, ids, config, emit, stop)
        self.in_flight += 1
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: asyncio.Future) -> None:
        self.in_flight -= 1

    def _run(self, ids: list[int], config: GenerationConfig, emit: Callable[[int, str], None],
             stop: threading.Event) -> None:
        # The clock starts when the work starts: queueing is bounded separately by max_queue.
        deadline = time.monotonic() + self.limits.request_timeout_s
        for index, piece in self.model.pieces(ids, config):
            if stop.is_set() or self.closing.is_set():
                return
            if time.monotonic() > deadline:
                raise GenerationTimeout
            emit(index, piece)


def _timeout_message(limits: Limits) -> str:
    return (f"generation stopped: it ran past the server's {limits.request_timeout_s:g} s limit; "
            f"ask for fewer words or sequences")


# -- the app ---------------------------------------------------------------------------------

def create_app(model: ScriptModel, limits: Limits | None = None) -> FastAPI:
    """The web app for one loaded model (shared, read-only) under these limits."""
    limits = limits or Limits()
    model.model.eval().requires_grad_(False)  # read-only: no dropout, no autograd state
    runner = Runner(model, limits)
    static = {name: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
              for name, kind in STATIC_FILES.items()}
    GenerateRequest = _request_model(limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = FastAPI(title="tvscript", version="0.1.0", lifespan=lifespan,
                  description=f"Generate TV scripts with the model '{model.name}'.")
    app.state.runner, app.state.limits, app.state.script_model = runner, limits, model
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in err.errors()]
        return JSONResponse({"detail": _validation_message(errors), "errors": errors}, status_code=422)

    @app.exception_handler(TvscriptError)
    async def _tvscript_error(_: Request, err: TvscriptError) -> JSONResponse:
        return JSONResponse({"detail": str(err).splitlines()[0] if str(err) else "invalid request"}, status_code=422)

    @app.exception_handler(GenerationTimeout)
    async def _timeout(_: Request, __: GenerationTimeout) -> JSONResponse:
        return JSONResponse({"detail": _timeout_message(limits)}, status_code=504)

    def prepare(req: BaseModel) -> tuple[list[int], GenerationConfig]:
        options = req.model_dump(exclude={"prime"})
        options["cast"] = tuple(options["cast"]) if options["cast"] else None
        if options["seed"] is None:
            options["seed"] = secrets.randbits(JS_SAFE_SEED_BITS)
        ids, config = model.prepare(req.prime, **options)  # an unknown cast fails here, before any streaming
        return ids, config

    # -- pages ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        body, kind = static["index.html"]
        return Response(body, media_type=kind)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:  # a lookup in a fixed table, never a path on disk
            raise HTTPException(404, "not found")
        body, kind = static[name]
        return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model.name}

    @app.get("/api/model")
    async def model_info() -> dict[str, Any]:
        meta = model.meta
        train = {k: v for k, v in (meta.get("train") or {}).items() if k not in ("data", "out", "resume")}
        return {
            "name": model.name,
            "speakers": model.speakers(),
            "vocab_size": len(model.vocab),
            "config": {"model": meta.get("model"), "train": train},
            "metrics": meta.get("metrics") or {},
            "test_perplexity": test_perplexity(meta),
            "defaults": {k: v for k, v in asdict(GenerationConfig()).items() if k != "cast"},
            "limits": asdict(limits),
        }

    # -- generation ----------------------------------------------------------------------
    @app.post("/api/generate", response_model=GenerateResponse)
    async def generate(req: GenerateRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        ids, config = prepare(req)
        parts: list[list[str]] = [[] for _ in range(config.num_return_sequences)]
        stop = threading.Event()
        try:
            await runner.submit(ids, config, lambda i, piece: parts[i].append(piece), stop)
        finally:
            stop.set()  # a client gone mid-request stops its generation
        texts = ["".join(p).rstrip("\n") + "\n" for p in parts]
        return {"text": texts[0], "texts": texts, "turns": turns_of(texts[0]), "seed": config.seed}

    @app.post("/api/stream", response_class=StreamingResponse,
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "events `piece` {index, text}, then `done` {seed, texts, fountain} "
                                              "or `error` {detail}"}})
    async def stream(req: GenerateRequest) -> StreamingResponse:  # type: ignore[valid-type]
        ids, config = prepare(req)
        runner.check_capacity()  # refuse with a status code while one can still be sent
        return StreamingResponse(events(ids, config), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def events(ids: list[int], config: GenerationConfig) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(index: int, piece: str) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (index, piece))
            except RuntimeError:  # the loop is gone (shutdown): stop generating
                stop.set()

        parts: list[list[str]] = [[] for _ in range(config.num_return_sequences)]
        try:
            try:
                future = runner.submit(ids, config, emit, stop)
            except HTTPException as err:
                yield sse("error", {"detail": err.detail})
                return
            # The worker's end is signalled through the queue, so every piece is sent first.
            future.add_done_callback(lambda _: queue.put_nowait(None))
            while (item := await queue.get()) is not None:
                index, piece = item
                parts[index].append(piece)
                yield sse("piece", {"index": index, "text": piece})
            try:
                future.result()
            except GenerationTimeout:
                yield sse("error", {"detail": _timeout_message(limits)})
                return
            except TvscriptError as err:
                yield sse("error", {"detail": str(err)})
                return
            except Exception:
                log.exception("generation failed")
                yield sse("error", {"detail": "internal error while generating; see the server log"})
                return
            texts = ["".join(p).rstrip("\n") + "\n" for p in parts]
            yield sse("done", {"seed": config.seed, "texts": texts, "fountain": [to_fountain(t) for t in texts]})
        finally:
            stop.set()  # client disconnected or stream finished: the worker stops at its next word

    return app


# -- running it ------------------------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that a taken port is a one-line error instead of a uvicorn exit."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise TvscriptError(f"cannot resolve host {host!r}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise TvscriptError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def serve(model: ScriptModel, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          threads: int | None = 1, log_level: str = "info") -> None:
    """Serve the app until interrupted (Ctrl-C).

    ``threads`` is torch's intra-op thread count for the process. One is the default: a
    generation is a chain of small batch-1 steps that extra threads slow down (spinning and
    contention, ~10x on a busy 2-core machine), and requests already run in parallel.
    """
    import torch
    import uvicorn

    if threads:
        torch.set_num_threads(threads)
    app = create_app(model, limits)
    sock = bind(host, port)
    actual_host, actual_port = sock.getsockname()[:2]
    shown = f"[{actual_host}]" if ":" in actual_host else actual_host
    print(f"tvscript: serving model '{model.name}' at http://{shown}:{actual_port}/ (API docs at /docs)",
          file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tvscript: note: listening on {host}, not only loopback: other machines can reach this server",
              file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
