"""One short smoke run on the real Seinfeld corpus: train, generate, evaluate."""

from __future__ import annotations

import json

import pytest

from tvscript.cli import main

pytestmark = pytest.mark.slow


def test_real_corpus_smoke(real_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(real_corpus), "--out", str(run), "--epochs", "1", "--max-minutes", "0.3",
                 "--embed-dim", "64", "--hidden-dim", "64", "--num-layers", "1", "--batch-size", "32",
                 "--seq-len", "32", "--quiet", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "valid loss" in err and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_valid_perplexity"] < 1000 and summary["tokens_per_second"] > 0
    assert main(["generate", "--model", str(run), "--prime", "george", "--max-new-tokens", "60", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("george:") and out.count("\n") >= 1
    assert main(["evaluate", "--model", str(run), "--data", str(real_corpus), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens"] > 30000 and 1.0 < report["bits_per_char"] < 3.5
