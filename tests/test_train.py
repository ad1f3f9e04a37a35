"""train.py: run directory contents, exact resume after Ctrl-C or SIGKILL, non-finite loss."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, tiny_config

import tvscript
from tvscript.checkpoint import load_checkpoint
from tvscript.errors import TvscriptError
from tvscript.train import resume, train


def _quiet(msg):
    pass


def test_run_directory_contents(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.json", "metrics.csv", "loss.png", "summary.json",
            "best", "last", "samples"} <= names
    assert (tiny_run / "last" / "trainer_state.pt").exists()
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["tokens_per_second"] > 0 and summary["epochs"] == 2
    assert summary["best_valid_perplexity"] == pytest.approx(torch.tensor(summary["best_valid_loss"]).exp().item(), rel=1e-4)
    rows = list(csv.DictReader(open(tiny_run / "metrics.csv")))
    valid = [float(r["loss"]) for r in rows if r["split"] == "valid"]
    assert len(valid) == 2 and valid[-1] < valid[0]  # it learns
    assert (tiny_run / "samples" / "epoch_2.txt").read_text().startswith("jerry:")
    assert tvscript.load(tiny_run).meta["metrics"]["loss"] == pytest.approx(summary["best_valid_loss"])


def test_refuses_to_overwrite_a_run(tiny_run, tiny_corpus):
    with pytest.raises(TvscriptError, match="already holds a run"):
        train(tiny_config(tiny_corpus, tiny_run), TINY_MODEL, log=_quiet, show_progress=False)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last").model.state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_exactly(tiny_corpus, tmp_path):
    """Stopping after epoch 1 and resuming gives the weights of an uninterrupted run."""
    options = dict(dropout=0.2, input_dropout=0.1, embed_dropout=0.1)  # RNG state matters too
    full = train(tiny_config(tiny_corpus, tmp_path / "full", eval_every=30), {**TINY_MODEL, **options},
                 log=_quiet, show_progress=False)
    part = train(tiny_config(tiny_corpus, tmp_path / "part", eval_every=30, epochs=1), {**TINY_MODEL, **options},
                 log=_quiet, show_progress=False)
    assert not _same(_weights(full), _weights(part))
    # epochs=1 vs 2 changes the cosine schedule, so the first half is rerun with 2 epochs' schedule
    part2 = train(tiny_config(tiny_corpus, tmp_path / "p2", eval_every=30, schedule="constant", epochs=1),
                  {**TINY_MODEL, **options}, log=_quiet, show_progress=False)
    resume(part2, {"epochs": 2}, log=_quiet, show_progress=False)
    ref = train(tiny_config(tiny_corpus, tmp_path / "ref", eval_every=30, schedule="constant"),
                {**TINY_MODEL, **options}, log=_quiet, show_progress=False)
    assert _same(_weights(ref), _weights(part2))
    steps = [int(r["step"]) for r in csv.DictReader(open(part2 / "metrics.csv"))]
    assert steps == sorted(steps)  # nothing logged twice


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tvscript", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


TRAIN_ARGS = ["--epochs", "3", "--batch-size", "4", "--seq-len", "8", "--lr", "0.01", "--min-freq", "1",
              "--warmup-steps", "0", "--embed-dim", "16", "--hidden-dim", "24", "--adaptive-cutoffs", "full",
              "--log-every", "5", "--eval-every", "20", "--threads", "1", "--quiet", "--device", "cpu"]


def _wait_for(path: Path, proc, timeout=60.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_to_identical_weights(tiny_corpus, tmp_path, sig):
    """A real process, a real signal at a random moment: Ctrl-C saves, SIGKILL loses at most
    one checkpoint interval; either way --resume ends with the uninterrupted run's weights."""
    ref = _cli("train", "--data", str(tiny_corpus), "--out", str(tmp_path / "ref"), *TRAIN_ARGS)
    run = _cli("train", "--data", str(tiny_corpus), "--out", str(tmp_path / "run"), *TRAIN_ARGS)
    _wait_for(tmp_path / "run" / ("metrics.csv" if sig == signal.SIGINT else "last"), run)
    run.send_signal(sig)
    out, err = run.communicate(timeout=60)
    assert ref.wait(timeout=120) == 0, ref.communicate()
    if sig == signal.SIGINT:
        assert run.returncode == 0 and "stopped by SIGINT" in err and "Traceback" not in err
    done = _cli("train", "--resume", str(tmp_path / "run"))
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert _same(_weights(tmp_path / "ref"), _weights(tmp_path / "run"))


def test_nonfinite_loss_stops_and_keeps_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    from tvscript.model import LSTMLanguageModel

    real_forward = LSTMLanguageModel.forward
    calls = {"n": 0}

    def exploding(self, idx, state=None, targets=None):
        logits, loss, state = real_forward(self, idx, state, targets)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] > 70:
                loss = loss * float("nan")
        return logits, loss, state

    monkeypatch.setattr(LSTMLanguageModel, "forward", exploding)
    with pytest.raises(TvscriptError, match="loss became nan at step 71") as err:
        train(tiny_config(tiny_corpus, tmp_path / "nan"), TINY_MODEL, log=_quiet, show_progress=False)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(LSTMLanguageModel, "forward", real_forward)
    good = load_checkpoint(tmp_path / "nan" / "last")
    assert all(torch.isfinite(p).all() for p in good.model.parameters())
