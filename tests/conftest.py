"""Shared fixtures: a tiny hand-written corpus and a tiny trained run (seconds on a CPU)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI runs the property tests with a fixed seed, so a red build is reproducible; locally
# they explore new examples every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REAL_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Seinfeld_Scripts.txt"

TINY_SCRIPT = """\
jerry: so what's the deal with airline food?

george: (sitting down) i don't know, jerry. i don't know anything!

elaine: you two are unbelievable.

kramer: (bursting in) hey buddy! did you see the game?

jerry: no, i was busy.

george: busy? busy doing what?

[the coffee shop. jerry and elaine are in a booth.]

elaine: he's a mess, jerry. a total mess.

jerry: he's always been a mess.

soup nazi: no soup for you!

newman: hello, jerry.

jerry: hello... newman.
"""


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)  # tiny models are faster on one thread, and CI has two cores


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(TINY_SCRIPT * 20, encoding="utf-8")
    return path


def tiny_config(data: Path, out: Path, **overrides):
    from tvscript.train import TrainConfig

    options = dict(data=str(data), out=str(out), epochs=2, batch_size=4, seq_len=8, lr=0.01, min_freq=1,
                   warmup_steps=0, log_every=5, device="cpu", sample_tokens=20)
    options.update(overrides)
    return TrainConfig(**options)


TINY_MODEL = dict(embed_dim=16, hidden_dim=24, num_layers=2, adaptive_cutoffs=())


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """A trained run directory (2 epochs of a 2x24 LSTM on the tiny corpus)."""
    from tvscript.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(tiny_config(tiny_corpus, out), TINY_MODEL, log=lambda m: None, show_progress=False)


@pytest.fixture(scope="session")
def real_corpus() -> Path:
    if not REAL_CORPUS.exists():
        pytest.skip(f"real corpus not found at {REAL_CORPUS}")
    return REAL_CORPUS


class ServerThread:
    """uvicorn serving an app on a free loopback port, in a background thread."""

    def __init__(self, app):
        import uvicorn

        from tvscript.serve.app import bind

        self.sock = bind("127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
