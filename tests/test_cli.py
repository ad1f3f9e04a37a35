"""The CLI end to end in a temp dir, through its own entry point."""

from __future__ import annotations

import json

import pytest

from tvscript.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_generate_evaluate_end_to_end(tmp_path, tiny_corpus, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "--data", str(tiny_corpus), "--out", "runs/t", "--epochs", "1",
                         "--batch-size", "4", "--seq-len", "8", "--embed-dim", "16", "--hidden-dim", "16",
                         "--min-freq", "1", "--adaptive-cutoffs", "full", "--weight-drop", "0.2", "--quiet", "--device", "cpu")
    assert code == 0, err
    assert out.strip().endswith("runs/t") and "valid loss" in err
    assert json.loads((tmp_path / "runs" / "t" / "config.json").read_text())["model"]["weight_drop"] == 0.2
    code, out, err = run(capsys, "generate", "--model", "runs/t", "--prime", "Elaine", "--max-new-tokens", "30", "--seed", "5")
    assert code == 0 and out.startswith("elaine:")
    code, again, _ = run(capsys, "generate", "--model", "runs/t/best", "--prime", "Elaine", "--max-new-tokens", "30", "--seed", "5")
    assert again == out  # the run directory and its best/ checkpoint are the same model
    code, _, _ = run(capsys, "generate", "--model", "runs/t", "--max-new-tokens", "30", "--seed", "5", "--output", "scene.txt",
                     "--num-return-sequences", "2")
    assert code == 0 and (tmp_path / "scene.txt").read_text().count("---") == 1
    code, exact, _ = run(capsys, "generate", "--model", "runs/t", "--prime", "Elaine", "--max-new-tokens", "30", "--seed", "5",
                         "--fp32", "--no-self-reply")
    assert code == 0 and exact.startswith("elaine:")
    code, out, _ = run(capsys, "generate", "--model", "runs/t", "--max-new-tokens", "30", "--format", "json", "--seed", "1")
    turns = json.loads(out)[0]["turns"]
    assert turns[0]["speaker"] == "jerry"
    code, out, err = run(capsys, "export", "--model", "runs/t", "--out", "shared/t", "--int8-embedding")
    assert code == 0 and sorted(p.name for p in (tmp_path / "shared" / "t").iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    code, small, _ = run(capsys, "generate", "--model", "shared/t", "--prime", "Elaine", "--max-new-tokens", "30", "--seed", "5")
    assert code == 0 and small.startswith("elaine:")
    code, out, err = run(capsys, "evaluate", "--model", "runs/t", "--data", str(tiny_corpus), "--json")
    report = json.loads(out)
    assert code == 0 and {"split", "tokens", "oov_rate", "loss", "perplexity", "bits_per_char"} <= set(report)
    assert report["split"] == "test" and report["tokens"] > 0
    code, out, err = run(capsys, "evaluate", "--model", "runs/t", "--data", str(tiny_corpus), "--json", "--adapt",
                         "--adapt-lr", "0.2", "--adapt-window", "8")
    adapted = json.loads(out)
    assert code == 0 and adapted["adapt_lr"] == 0.2 and adapted["adapt_window"] == 8
    assert adapted["loss"] == report["loss"] and adapted["adapt_loss"] != report["loss"]
    assert {"adapt_perplexity", "adapt_bits_per_char", "adapt_bits_per_char_closed"} <= set(adapted)


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "nowhere"], "no such model directory"),
    (["generate", "--top-p", "1.5"], "--top-p: must be <= 1"),
    (["generate", "--max-new-tokens", "0"], "--max-new-tokens: must be >= 1"),
    (["generate", "--temperature", "nan"], "not a finite number"),
    (["generate", "--self-reply-penalty", "-1"], "--self-reply-penalty: must be >= 0"),
    (["generate", "--self-reply-penalty", "1000"], "--self-reply-penalty: must be <= 100"),
    (["train", "--data", "missing.txt"], "no such file"),
    (["train"], "--data is required"),
    (["train", "--data", "x.txt", "--lr", "-1"], "--lr: must be > 0"),
    (["train", "--data", "x.txt", "--preset", "nope"], "invalid choice"),
    (["evaluate", "--model", "nowhere", "--data", "x.txt"], "no such model directory"),
    (["evaluate", "--data", "x.txt", "--adapt", "--adapt-lr", "-0.1"], "--adapt-lr: must be >= 0"),
    (["evaluate", "--data", "x.txt", "--adapt", "--adapt-window", "0"], "--adapt-window: must be >= 1"),
    (["bogus"], "invalid choice"),
])
def test_bad_input_is_one_line_no_traceback(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_help_for_every_command(capsys):
    for command in ("download", "train", "generate", "evaluate", "export", "serve"):
        assert main([command, "--help"]) == 0
        assert "usage: tvscript " + command in capsys.readouterr().out


def test_resume_refuses_changed_hyperparameters(tiny_run, capsys):
    code, _, err = run(capsys, "train", "--resume", str(tiny_run), "--lr", "0.1")
    assert code == 1 and "only --epochs" in err
