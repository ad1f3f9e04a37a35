"""Data-parallel training under torchrun: 2 gloo processes on the CPU, a tiny corpus, seconds per run.

* a run through ``torchrun -m tvscript train`` (wrapped so each rank also dumps its final
  parameters) finishes, writes one run directory, learns, and ends with identical ranks;
* 2 ranks x B rows train exactly like 1 process x 2B rows, on a corpus sized so that the
  two ranks' shards cut into the same rows as the single process's batch;
* a run stopped after one epoch and resumed (same world size) ends where the uninterrupted
  run ends: each rank gets back its own LSTM state and RNG;
* resuming with another world size is refused; the checkpoint loads on the CPU.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_SCRIPT

pytestmark = pytest.mark.slow  # spawns torchrun subprocesses

WORLD, ROWS = 2, 2  # processes, TBPTT rows per process
TIMEOUT = 240  # seconds per torchrun launch (each takes a few on an idle 2-core machine)

COMMON = ["--seq-len", "8", "--lr", "0.01", "--min-freq", "1", "--warmup-steps", "0", "--schedule", "constant",
          "--log-every", "5", "--device", "cpu", "--embed-dim", "16", "--hidden-dim", "24", "--num-layers", "2",
          "--adaptive-cutoffs", "10,40", "--quiet"]
DROPOUT = ["--dropout", "0.2", "--input-dropout", "0.1", "--embed-dropout", "0.05"]
NO_DROPOUT = ["--dropout", "0", "--input-dropout", "0", "--embed-dropout", "0"]

# Runs the real CLI under torchrun; each rank also saves its own final parameters.
DUMP_PARAMS = '''
import sys
import torch
import tvscript.train as train_module
from tvscript.cli import main

dump_dir, argv = sys.argv[1], sys.argv[2:]
original_run = train_module.Trainer.run

def run_and_dump(self, *args, **kwargs):
    result = original_run(self, *args, **kwargs)
    params = {name: p.detach().cpu().clone() for name, p in self.model.named_parameters()}
    torch.save(params, f"{dump_dir}/rank{self.dist.rank}.pt")
    return result

train_module.Trainer.run = run_and_dump
sys.exit(main(argv))
'''


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone`` (a free port) with WORLD gloo workers."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--standalone", *args]
    # A session of its own, so a timeout kills the workers too, not just the launcher.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun timed out after {TIMEOUT}s:\n{err[-3000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{err[-5000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last" / "model.safetensors"))


def metrics(run: Path, split: str) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["split"] == split]


@pytest.fixture(scope="module")
def ddp_corpus(tmp_path_factory) -> Path:
    """The tiny script repeated until the training stream splits evenly into WORLD x ROWS rows: then
    rank r's shard, cut into ROWS rows, is rows r*ROWS.. of the whole stream cut into WORLD*ROWS."""
    from tvscript.data import load_corpus

    path = tmp_path_factory.mktemp("ddp_corpus") / "tiny.txt"
    for repeats in range(12, 60):
        path.write_text(TINY_SCRIPT * repeats, encoding="utf-8")
        targets = load_corpus(str(path), min_freq=1).streams["train"].num_targets
        if targets % (WORLD * ROWS) == 0:
            return path
    pytest.fail("no repetition of the tiny script gives an evenly divisible training stream")


@pytest.fixture(scope="module")
def ddp_run(ddp_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """2 epochs of a 2-process run with dropout and the adaptive head; (run dir, per-rank dumps)."""
    work = tmp_path_factory.mktemp("ddp")
    script, dumps = work / "dump_params.py", work / "dumps"
    script.write_text(DUMP_PARAMS, encoding="utf-8")
    dumps.mkdir()
    run = work / "run"
    torchrun(str(script), str(dumps), "train", "--data", str(ddp_corpus), "--out", str(run), "--epochs", "2",
             "--batch-size", str(ROWS), *COMMON, *DROPOUT, cwd=work)
    return run, dumps


def test_torchrun_trains_writes_one_run_and_keeps_ranks_identical(ddp_run):
    run, dumps = ddp_run
    for ckpt in (run / "last", run / "best"):
        assert {"model.safetensors", "config.json", "vocab.json"} <= {p.name for p in ckpt.iterdir()}
    assert (run / "last" / "trainer_state.pt").exists()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_1.txt", "epoch_2.txt"]
    assert not list(run.parent.glob("**/*.tmp*")) and not list(run.glob("*.old"))

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == WORLD and summary["epochs"] == 2.0
    meta = json.loads((run / "config.json").read_text())
    assert meta["world_size"] == WORLD

    # Logged once, by rank 0: one train row per log point, one valid row per epoch.
    valid = metrics(run, "valid")
    assert [int(r["epoch"]) for r in valid] == [1, 2]
    steps = [int(r["step"]) for r in metrics(run, "train")]
    assert steps == sorted(set(steps))
    train = [float(r["loss"]) for r in metrics(run, "train")]
    assert train[-1] < train[0] - 0.3
    assert float(valid[1]["loss"]) < float(valid[0]["loss"])

    # Every rank ends with the same parameters, bit for bit, and rank 0 saved them.
    ranks = [torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    saved = weights(run)
    for name, value in ranks[0].items():
        assert torch.equal(value, saved[name]), name


def test_tokens_are_counted_across_ranks(ddp_run, ddp_corpus):
    from tvscript.data import load_corpus

    run, _ = ddp_run
    summary = json.loads((run / "summary.json").read_text())
    targets = load_corpus(str(ddp_corpus), min_freq=1).streams["train"].num_targets
    assert summary["tokens"] == 2 * targets  # 2 epochs, every training target once per epoch, all ranks


def test_two_ranks_of_b_rows_train_like_one_process_of_2b_rows(ddp_corpus, tmp_path):
    from tvscript.cli import main

    flags = ["--data", str(ddp_corpus), "--epochs", "1", *COMMON, *NO_DROPOUT]
    torchrun("-m", "tvscript", "train", "--out", str(tmp_path / "ddp"), "--batch-size", str(ROWS), *flags, cwd=tmp_path)
    assert main(["train", "--out", str(tmp_path / "single"), "--batch-size", str(WORLD * ROWS), *flags]) == 0

    ddp, single = weights(tmp_path / "ddp"), weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for name in ddp:  # the same updates; only the order of float sums differs
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # Same logged train losses (mean over all ranks' tokens) and the same valid loss.
    for a, b in zip(metrics(tmp_path / "ddp", "train"), metrics(tmp_path / "single", "train"), strict=True):
        assert a["step"] == b["step"] and float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-4)
    [a], [b] = metrics(tmp_path / "ddp", "valid"), metrics(tmp_path / "single", "valid")
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-4)
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ddp", "single")]
    assert summaries[0]["tokens"] == summaries[1]["tokens"] and summaries[0]["steps"] == summaries[1]["steps"]


def test_resume_with_the_same_world_size_continues_exactly(ddp_run, ddp_corpus, tmp_path):
    full, _ = ddp_run
    run = tmp_path / "run"
    torchrun("-m", "tvscript", "train", "--data", str(ddp_corpus), "--out", str(run), "--epochs", "1",
             "--batch-size", str(ROWS), *COMMON, *DROPOUT, cwd=tmp_path)
    state = torch.load(run / "last" / "trainer_state.pt", weights_only=True)
    assert len(state["ranks"]) == WORLD  # each rank's own LSTM state and RNG
    assert not torch.equal(state["ranks"][0]["lstm_state"][0][0], state["ranks"][1]["lstm_state"][0][0])

    torchrun("-m", "tvscript", "train", "--resume", str(run), "--epochs", "2", "--quiet", cwd=tmp_path)
    resumed, uninterrupted = weights(run), weights(full)
    for name in uninterrupted:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=1e-6, msg=name)
    assert [r["loss"] for r in metrics(run, "valid")] == [r["loss"] for r in metrics(full, "valid")]


def test_resume_with_another_world_size_is_refused(ddp_run):
    from tvscript.errors import TvscriptError
    from tvscript.train import resume

    run, _ = ddp_run
    with pytest.raises(TvscriptError, match="2 processes"):
        resume(run, {"epochs": 3}, log=lambda m: None, show_progress=False)


def test_ddp_checkpoint_loads_and_generates_on_cpu(ddp_run):
    from tvscript.checkpoint import load_checkpoint

    run, _ = ddp_run
    ckpt = load_checkpoint(run, device="cpu")
    assert next(ckpt.model.parameters()).device.type == "cpu"
    ids = torch.tensor([[ckpt.vocab.unk_id]])
    logits, _, _ = ckpt.model(ids)
    assert logits.shape == (1, len(ckpt.vocab)) and torch.isfinite(logits).all()
