"""download.py against a local HTTP server on loopback (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from tvscript.cli import main
from tvscript.download import SEINFELD_URL, download
from tvscript.errors import TvscriptError


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "corpus.txt").write_text("jerry: hello.\n\ngeorge: hi.\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def test_download_verifies_checksum(server, tmp_path):
    url, root = server
    digest = hashlib.sha256((root / "corpus.txt").read_bytes()).hexdigest()
    path = download(tmp_path / "data", url=f"{url}/corpus.txt", sha256=digest, name="c.txt")
    assert path.read_bytes() == (root / "corpus.txt").read_bytes()
    with pytest.raises(TvscriptError, match="expected"):
        download(tmp_path / "other", url=f"{url}/corpus.txt", sha256="0" * 64, name="c.txt")
    assert not (tmp_path / "other" / "c.txt").exists()  # a wrong file is never saved
    with pytest.raises(TvscriptError, match="failed"):
        download(tmp_path / "x", url=f"{url}/missing.txt", sha256=digest, name="c.txt")


def test_download_command_uses_public_url(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake(dest, url=SEINFELD_URL, **kw):
        seen["url"] = url
        raise TvscriptError("offline")

    monkeypatch.setattr("tvscript.download.download", fake)
    assert main(["download", "--dest", str(tmp_path)]) == 1
    assert seen["url"].startswith("https://raw.githubusercontent.com/udacity/deep-learning-v2-pytorch/")
    assert "offline" in capsys.readouterr().err
