"""Bad input, crashes and untrusted files never cost a user their work (docs/reliability.md).

Every bad input at every entry point gets a one-line error that names the problem and the
fix, a non-zero exit (or a 4xx), no traceback, and nothing written over existing work.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tvscript
from tvscript.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from tvscript.cli import build_parser, main
from tvscript.corpus import CorpusError, read_turns
from tvscript.errors import TvscriptError
from tvscript.model import LSTMLanguageModel, ModelConfig
from tvscript.vocab import Vocab

TINY_TRAIN = ["--epochs", "1", "--batch-size", "4", "--seq-len", "8", "--embed-dim", "8", "--hidden-dim", "8",
              "--min-freq", "1", "--adaptive-cutoffs", "full", "--quiet", "--device", "cpu"]


def cli(capsys, *args) -> tuple[int, str]:
    """Run the CLI in-process; the error is one line, no traceback."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, err


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def copy_model(run: Path, dest: Path) -> Path:
    """The run directory's model files (config.json, vocab.json, model.safetensors) in a fresh folder."""
    dest.mkdir(parents=True)
    for name in ("config.json", "vocab.json", "model.safetensors"):
        shutil.copy(run / name, dest / name)
    return dest


# -- corpus files (tvscript train --data / evaluate --data) ------------------------------------

def _write(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


CORPUS_CASES = {
    "empty": ("empty.txt", b"", "the file is empty"),
    "whitespace-only": ("blank.txt", b"  \n\n\t\n", "the file is empty"),
    "binary": ("model.bin", b"\x00\x01\x02\x03binary\x00" * 100, "looks like a binary file"),
    "undecodable": ("latin1.txt", "jerry: caf\u00e9 au lait\n".encode("latin-1"), "cannot be decoded as utf-8-sig"),
    "mixed-encoding": ("mixed.txt", "jerry: caf\u00e9\n".encode() + b"george: \x93quoted\x94\n",
                       "bad byte 0x93 on line 2"),
    "prose": ("prose.txt", b"It was a dark and stormy night.\nNobody said anything.\n", "no dialogue turns found"),
    "csv-missing-columns": ("scripts.csv", b"who,line\njerry,hello\n", "no column 'character'"),
    "csv-malformed-header": ("bad.csv", b'"' + b"x" * 140_000 + b'\n', "malformed CSV header"),
    "csv-malformed-row": ("bad.csv", b"character,dialogue\njerry," + b"x" * 140_000 + b"\n", "malformed CSV at line"),
    "too-few-turns": ("few.txt", b"jerry: hi.\ngeorge: yo.\n", "too few to hold out a validation split"),
}


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_bad_corpus_files(tmp_path, capsys, case):
    name, content, message = CORPUS_CASES[case]
    path = _write(tmp_path, name, content)
    code, err = cli(capsys, "train", "--data", path, "--out", tmp_path / "run", *TINY_TRAIN)
    assert_one_line_error(code, err, message)
    assert str(path) in err
    assert not (tmp_path / "run").exists()  # nothing made for a run that never started


def test_unknown_encoding(tmp_path, tiny_corpus, capsys):
    code, err = cli(capsys, "train", "--data", tiny_corpus, "--out", tmp_path / "run", "--encoding", "klingon", *TINY_TRAIN)
    assert_one_line_error(code, err, "unknown text encoding 'klingon'")


def test_utf16_works_with_encoding_flag(tmp_path):
    path = _write(tmp_path, "utf16.txt", "jerry: hello.\ngeorge: hi.\n".encode("utf-16"))
    with pytest.raises(CorpusError, match="binary.*--encoding utf-16"):
        read_turns(path)
    assert [t.speaker for t in read_turns(path, encoding="utf-16")] == ["jerry", "george"]


def test_enormous_single_line_is_parsed_quickly(tmp_path):
    """A 5 MB line neither hangs nor blows memory: it is one (long) turn."""
    from tvscript.tokenizer import tokenize

    path = _write(tmp_path, "huge.txt", b"jerry: " + b"hello there, " * 400_000 + b"\n")  # 5.2 MB
    start = time.perf_counter()
    turns = read_turns(path)
    assert len(turns) == 1 and turns[0].speaker == "jerry"
    assert len(tokenize(turns)) == 1_200_002
    unclosed = _write(tmp_path, "paren.txt", b"jerry (" + b"a" * 5_000_000 + b"\n")  # regex backtracking bait
    with pytest.raises(CorpusError, match="no dialogue turns"):
        read_turns(unclosed)
    assert time.perf_counter() - start < 30  # ~1 s measured on a busy 2-core machine


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".txt", ".csv"]))
def test_read_turns_on_arbitrary_bytes_raises_only_corpus_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"corpus{suffix}"
    path.write_bytes(data)
    try:
        turns = read_turns(path)
    except CorpusError as err:
        assert "\n" not in str(err)
    else:
        assert any(t.speaker for t in turns)


_cell = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["character", "Dialogue", "who", "line", "", "x,y", '"q"']), max_size=4),
       rows=st.lists(st.lists(_cell, max_size=5), max_size=6), raw_tail=st.sampled_from(["", '"unclosed', "a\x00b", "\r"]))
def test_read_turns_on_generated_csv_raises_only_corpus_error(tmp_path, header, rows, raw_tail):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path / "gen.csv"
    path.write_text(out.getvalue() + raw_tail, encoding="utf-8")
    try:
        turns = read_turns(path)
    except CorpusError as err:
        assert "\n" not in str(err)
    else:
        assert all(t.text for t in turns) and any(t.speaker for t in turns)


# -- training flags and run directories ---------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "100000"], "too few for --batch-size 100000; use a --batch-size of at most"),
    (["--hidden-dim", str(10**12)], "over the limit of 4,000,000,000"),
    (["--embed-dim", str(10**9)], "over the limit"),
    (["--num-layers", str(10**6)], "num_layers must be at most 64"),
    (["--adaptive-cutoffs", "5,3"], "adaptive cutoffs must increase"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--batch-size", "-3"], "--batch-size: must be >= 1"),
    (["--dropout", "1.5"], "--dropout: must be <= 0.99"),
    (["--lr", "inf"], "not a finite number"),
    (["--max-minutes", "0"], "--max-minutes: must be > 0"),
])
def test_bad_training_options(tmp_path, tiny_corpus, capsys, flags, message):
    code, err = cli(capsys, "train", "--data", tiny_corpus, "--out", tmp_path / "run", *TINY_TRAIN, *flags)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_unavailable_device_is_refused_before_anything_is_written(tmp_path, tiny_corpus, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = cli(capsys, "train", "--data", tiny_corpus, "--out", tmp_path / "run", *TINY_TRAIN[:-1], "cuda")
    assert_one_line_error(code, err, "CUDA is not available here")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("leftover", ["config.json", "last", "last.old", "best", "summary.json"])
def test_out_at_an_existing_run_is_refused_and_untouched(tmp_path, tiny_run, tiny_corpus, capsys, leftover):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    if leftover == "last.old":  # a kill between the renames of a checkpoint swap
        os.replace(run / "last", run / "last.old")
    for name in ("config.json", "last", "last.old", "best", "summary.json", "model.safetensors"):
        if name != leftover and (run / name).exists():
            shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    before = tree_digest(run)
    code, err = cli(capsys, "train", "--data", tiny_corpus, "--out", run, *TINY_TRAIN)
    assert_one_line_error(code, err, f"{run} already holds a run; continue it with --resume {run}")
    assert tree_digest(run) == before


def test_out_is_a_file(tmp_path, tiny_corpus, capsys):
    target = _write(tmp_path, "notes.txt", b"my notes")
    code, err = cli(capsys, "train", "--data", tiny_corpus, "--out", target, *TINY_TRAIN)
    assert_one_line_error(code, err, "is a file, not a folder")
    assert target.read_bytes() == b"my notes"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "no such folder"),
    (lambda tmp: _write(tmp, "file.txt", b"x"), "is a file"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no last/ checkpoint to continue from"),
])
def test_resume_of_something_that_is_not_a_run(tmp_path, capsys, make, message):
    code, err = cli(capsys, "train", "--resume", make(tmp_path))
    assert_one_line_error(code, err, message)


def test_resume_of_a_checkpoint_inside_a_run(tiny_run, capsys):
    code, err = cli(capsys, "train", "--resume", tiny_run / "last")
    assert_one_line_error(code, err, "no last/ checkpoint to continue from")


@pytest.mark.parametrize("damage, message", [
    (lambda last: torch.save({"step": torch.tensor(1)}, last / "trainer_state.pt"), "trainer_state.pt does not fit this run"),
    (lambda last: (last / "trainer_state.pt").write_bytes(b"PK\x03\x04 truncated"), "refused or unreadable trainer state"),
    (lambda last: (last / "trainer_state.pt").unlink(), "cannot be resumed"),
    (lambda last: (last / "config.json").write_text(json.dumps({k: v for k, v in json.loads(
        (last / "config.json").read_text()).items() if k != "train"})), "no usable training settings"),
])
def test_resume_of_a_damaged_run(tmp_path, tiny_run, capsys, damage, message):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    damage(run / "last")
    before = tree_digest(run)
    code, err = cli(capsys, "train", "--resume", run, "--epochs", "3")
    assert_one_line_error(code, err, message)
    assert tree_digest(run) == before


def test_resume_after_the_corpus_changed(tmp_path, tiny_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _edit_json(run / "last" / "config.json", lambda c: c["data"].update(sha256="0" * 64))  # as if the file changed
    before = tree_digest(run)
    code, err = cli(capsys, "train", "--resume", run)
    assert_one_line_error(code, err, "has changed since the run started; resume needs the same corpus")
    assert tree_digest(run) == before


# -- checkpoint directories (generate/evaluate/serve --model, tvscript.load) --------------------

def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


CHECKPOINT_CASES = {
    "missing-weights": (lambda d: (d / "model.safetensors").unlink(), "missing model.safetensors"),
    "truncated-weights": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:200]),
                          "not a valid safetensors file"),
    "missing-vocab": (lambda d: (d / "vocab.json").unlink(), "not a readable vocabulary file"),
    "truncated-vocab": (lambda d: (d / "vocab.json").write_bytes((d / "vocab.json").read_bytes()[:50]),
                        "not a readable vocabulary file"),
    "vocab-not-a-list": (lambda d: (d / "vocab.json").write_text(json.dumps({"itos": {"<unk>": 0}})),
                         "'itos' must be a list of strings"),
    "vocab-of-numbers": (lambda d: (d / "vocab.json").write_text(json.dumps({"itos": ["<unk>", 1, None]})),
                         "'itos' must be a list of strings"),
    "vocab-without-unk": (lambda d: (d / "vocab.json").write_text(json.dumps({"itos": ["a", "b"]})),
                          "vocabulary must start with <unk>"),
    "vocab-vs-config": (lambda d: _edit_json(d / "vocab.json", lambda v: v["itos"].append("zzz")), "different models"),
    "weights-vs-config": (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(hidden_dim=12)),
                          "weights do not match config.json"),
    "missing-config": (lambda d: (d / "config.json").unlink(), "not a tvscript checkpoint (no config.json)"),
    "nested-config": (lambda d: (d / "config.json").write_bytes(b"[" * 100_000), "not JSON"),
    "truncated-config": (lambda d: (d / "config.json").write_bytes((d / "config.json").read_bytes()[:30]), "not JSON"),
    "foreign-config": (lambda d: (d / "config.json").write_text('{"architectures": ["GPT2"]}'),
                       "not a tvscript checkpoint config"),
    "future-version": (lambda d: _edit_json(d / "config.json", lambda c: c.update(version=99)), "version 99 is not supported"),
    "absurd-hidden-dim": (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(hidden_dim=10**9)),
                          "over the limit"),
    "negative-vocab": (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(vocab_size=-5)),
                       "must be positive"),
    "float-size": (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(embed_dim=8.5)),
                   "embed_dim must be an integer"),
    "model-not-a-dict": (lambda d: _edit_json(d / "config.json", lambda c: c.update(model=[1, 2])), "bad model config"),
    "unknown-model-key": (lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(exec="rm -rf /")),
                          "bad model config"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_damaged_or_foreign_checkpoint(tmp_path, tiny_run, capsys, monkeypatch, case):
    damage, message = CHECKPOINT_CASES[case]
    ck = copy_model(tiny_run, tmp_path / "ck")
    damage(ck)
    code, err = cli(capsys, "generate", "--model", ck, "--max-new-tokens", "5")
    assert_one_line_error(code, err, message)
    with pytest.raises(TvscriptError, match=re.escape(message)):
        tvscript.load(ck)


def test_absurd_config_is_refused_before_allocating(tmp_path, tiny_run, monkeypatch):
    """hidden_dim 10**4 is under the hard cap (1.2e9 parameters, 5 GB) but far more than the stored
    weights: refused by comparing with them, before any model is made."""
    ck = copy_model(tiny_run, tmp_path / "ck")
    _edit_json(ck / "config.json", lambda c: c["model"].update(hidden_dim=10**4))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was allocated")

    monkeypatch.setattr("tvscript.checkpoint.LSTMLanguageModel", no_model)
    with pytest.raises(CheckpointError, match=r"weights do not match config.json \(it describes at least [\d,]+ parameters, model.safetensors holds"):
        load_checkpoint(ck)


def test_huge_consistent_vocab_with_tiny_weights_is_refused(tmp_path, tiny_run):
    ck = copy_model(tiny_run, tmp_path / "ck")
    itos = ["<unk>", "<eot>"] + [f"w{i}" for i in range(300_000)]
    (ck / "vocab.json").write_text(json.dumps({"itos": itos}))
    _edit_json(ck / "config.json", lambda c: c["model"].update(vocab_size=len(itos)))
    with pytest.raises(CheckpointError, match="the files are from different models"):
        load_checkpoint(ck)
    (ck / "vocab.json").write_bytes(b"[" * 100_000)  # deeply nested JSON: a RecursionError inside json
    with pytest.raises(TvscriptError, match="not a readable vocabulary file"):
        load_checkpoint(ck)


def test_oversized_json_files_are_not_read(tmp_path):
    path = _write(tmp_path, "vocab.json", b'{"itos": ["<unk>"' + b', "a"' * 1000 + b"]}")
    with pytest.raises(TvscriptError, match="larger than 1,000 bytes; not a tvscript vocabulary"):
        Vocab.load(path, max_bytes=1000)


def test_model_config_validation_direct():
    for bad in (dict(hidden_dim=10**12), dict(num_layers=10**6), dict(vocab_size=-1), dict(embed_dim=True),
                dict(adaptive_cutoffs=("a",))):
        with pytest.raises(TvscriptError):
            ModelConfig(**{"vocab_size": 10, **bad})


@pytest.mark.parametrize("model_arg, message", [
    ("file", "is a file, not a checkpoint directory"),
    ("weights", "is a file, not a checkpoint directory"),
    ("empty", "not a tvscript checkpoint (no config.json)"),
    ("missing", "no such model directory"),
])
def test_model_flag_not_a_checkpoint(tmp_path, tiny_run, capsys, model_arg, message):
    (tmp_path / "empty").mkdir()
    path = {"file": _write(tmp_path, "x.txt", b"hello"), "weights": tiny_run / "model.safetensors",
            "empty": tmp_path / "empty", "missing": tmp_path / "missing"}[model_arg]
    code, err = cli(capsys, "generate", "--model", path)
    assert_one_line_error(code, err, message)
    code, err = cli(capsys, "evaluate", "--model", path, "--data", tmp_path / "x.txt")
    assert_one_line_error(code, err, message)


# -- generation options and prime text ----------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--max-new-tokens", str(10**12)], "--max-new-tokens: must be <= 100000"),
    (["--max-new-tokens", "-5"], "--max-new-tokens: must be >= 1"),
    (["--num-return-sequences", str(10**9)], "--num-return-sequences: must be <= 1024"),
    (["--num-return-sequences", "0"], "--num-return-sequences: must be >= 1"),
    (["--temperature", "1e308"], "--temperature: must be <= 100.0"),
    (["--temperature", "-1"], "--temperature: must be >= 0"),
    (["--temperature", "1e-300"], "temperature must be 0 (greedy) or in [0.001, 100], got 1e-300"),
    (["--repetition-penalty", "1e-300"], "repetition_penalty must be in [0.001, 1000], got 1e-300"),
    (["--top-p", "1.5"], "--top-p: must be <= 1"),
    (["--top-p", "0"], "--top-p: must be > 0"),
    (["--top-p", "nan"], "not a finite number"),
    (["--top-k", "0"], "--top-k: must be >= 1"),
    (["--repetition-penalty", "0"], "--repetition-penalty: must be > 0"),
    (["--max-lines", "0"], "--max-lines: must be >= 1"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--seed", str(2**64)], "seed must be in [0, 2^63)"),
    (["--max-new-tokens", "ten"], "'ten' is not a valid int"),
    (["--cast", ","], "give speaker names separated by commas"),
    (["--cast", "batman"], "unknown cast"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
    (["--prime", "\U0001F600\U0001F4A9"], "none of the prime's words are in the model's vocabulary"),
    (["--prime", "xyzzy plugh"], "none of the prime's words are in the model's vocabulary (xyzzy, plugh)"),
    (["--prime", "bob sacamano:"], "unknown speaker 'bob sacamano'"),
    (["--format", "pdf"], "invalid choice: 'pdf'"),
])
def test_bad_generation_options(tiny_run, capsys, flags, message):
    code, err = cli(capsys, "generate", "--model", tiny_run, "--max-new-tokens", "5", *flags)
    assert_one_line_error(code, err, message)


def test_library_bounds_generation_too(tiny_run):
    model = tvscript.load(tiny_run)
    for options, message in [(dict(max_new_tokens=10**12), "max_new_tokens must be in"),
                             (dict(num_return_sequences=10**9), "num_return_sequences must be in"),
                             (dict(temperature=1e308), r"temperature must be 0 \(greedy\) or in"),
                             (dict(temperature=1e-300), r"temperature must be 0 \(greedy\) or in \[0.001, 100\]"),
                             (dict(repetition_penalty=1e-300), r"repetition_penalty must be in \[0.001, 1000\]")]:
        with pytest.raises(TvscriptError, match=message):
            model.generate_batch("jerry", **options)


def test_tiny_top_p_keeps_the_most_likely_token():
    """top_p=1e-300 is in (0, 1] but rounds to 0.0 in float32: it once emptied the nucleus (a 500)."""
    from tvscript.sampling import sample

    logits = torch.tensor([[0.1, 3.0, 0.2, -1.0]]).repeat(50, 1)
    assert set(sample(logits, torch.Generator().manual_seed(0), top_p=1e-300).tolist()) == {1}


def test_output_into_a_missing_folder(tmp_path, tiny_run, capsys):
    target = tmp_path / "no" / "such" / "scene.txt"
    code, err = cli(capsys, "generate", "--model", tiny_run, "--max-new-tokens", "5", "--output", target)
    assert_one_line_error(code, err, f"folder {target.parent} does not exist")
    assert not (tmp_path / "no").exists()


def test_output_is_a_directory(tmp_path, tiny_run, capsys):
    code, err = cli(capsys, "generate", "--model", tiny_run, "--max-new-tokens", "5", "--output", tmp_path)
    assert_one_line_error(code, err, "is a directory; give a file name")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_failed_generation_leaves_an_existing_output_file_alone(tmp_path, tiny_run, capsys, fmt):
    target = _write(tmp_path, "scene.txt", b"my precious earlier scene\n")
    code, err = cli(capsys, "generate", "--model", tiny_run, "--prime", "xyzzy", "--output", target, "--format", fmt)
    assert_one_line_error(code, err, "none of the prime's words")
    assert target.read_bytes() == b"my precious earlier scene\n"
    code, _ = cli(capsys, "generate", "--model", tiny_run, "--max-new-tokens", "5", "--seed", "1", "--output", target,
                  "--format", fmt)
    assert code == 0 and target.read_text() != "my precious earlier scene\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scene.txt"]  # no temp file left


# -- crashes: kills during a checkpoint write, disk full ----------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even `except Exception`)."""


def _tiny_model(name_seed: int = 0):
    torch.manual_seed(name_seed)
    vocab = Vocab(("<unk>", "\n", "jerry:", "hi", "."))
    return LSTMLanguageModel(ModelConfig(vocab_size=5, embed_dim=8, hidden_dim=8)).eval(), vocab


def _kill_at_replace(monkeypatch, call: int) -> None:
    """os.replace in checkpoint.py dies at its call-th use (1: moving the old checkpoint aside)."""
    real = os.replace
    count = {"n": 0}

    def replace(src, dst):
        count["n"] += 1
        if count["n"] == call:
            raise Killed
        real(src, dst)

    monkeypatch.setattr("tvscript.checkpoint.os.replace", replace)


def test_kill_during_checkpoint_swap_keeps_a_complete_checkpoint(tmp_path, monkeypatch):
    model, vocab = _tiny_model()
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "one"})
    with monkeypatch.context() as m:
        _kill_at_replace(m, 2)  # after ck -> ck.old, before the new one is renamed in
        with pytest.raises(Killed):
            save_checkpoint(tmp_path / "ck", model, vocab, {"name": "two"})
    assert not (tmp_path / "ck").exists() and (tmp_path / "ck.old").exists()
    assert tvscript.load(tmp_path / "ck").meta["name"] == "one"
    # the next save is killed too, at its first rename: ck.old must survive until the new one is in
    with monkeypatch.context() as m:
        _kill_at_replace(m, 1)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path / "ck", model, vocab, {"name": "three"})
    assert tvscript.load(tmp_path / "ck").meta["name"] == "one"
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "four"})
    assert tvscript.load(tmp_path / "ck").meta["name"] == "four"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_resume_after_a_kill_mid_swap_matches_a_clean_resume(tmp_path, tiny_run, capsys):
    """A run killed between the two renames of last/ (only last.old, plus a half-written temp
    directory) resumes from last.old to the same weights as the intact run."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    shutil.copytree(tiny_run, clean)
    shutil.copytree(tiny_run, killed)
    os.replace(killed / "last", killed / "last.old")
    half = killed / ".last.tmp-abc123"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)  # what the kill interrupted
    assert tvscript.load(killed / "last").path.name == "last.old"
    for run in (clean, killed):
        code, err = cli(capsys, "train", "--resume", run, "--epochs", "3")
        assert code == 0, err
    a, b = load_checkpoint(clean / "last").model.state_dict(), load_checkpoint(killed / "last").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / "last.old").exists()


def test_disk_full_in_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text('{"steps": 10}')

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tvscript.checkpoint.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b'{"steps": 20}')
    assert target.read_text() == '{"steps": 10}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # the temp file is gone


def test_disk_full_during_training_save_keeps_summary_and_checkpoint(tmp_path, tiny_run, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = tree_digest(run)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tvscript.checkpoint.save_file", disk_full)
    code, err = cli(capsys, "train", "--resume", run, "--epochs", "3", "--quiet")
    assert code == 1 and "Traceback" not in err  # stderr also holds the run's progress lines
    assert err.strip().splitlines()[-1] == "tvscript: error: No space left on device"
    after = tree_digest(run)
    for name in ("summary.json", "config.json", "model.safetensors", "last/model.safetensors",
                 "last/trainer_state.pt", "best/model.safetensors"):
        assert after[name] == before[name], name
    assert tvscript.load(run / "last").path == run / "last"


# -- the server ---------------------------------------------------------------------------------

def test_server_binds_loopback_by_default():
    from tvscript.serve import serve

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


@pytest.fixture(scope="module")
def small_app(tiny_run):
    from tvscript.serve import Limits, create_app

    return create_app(tvscript.load(tiny_run), Limits(max_new_tokens=20, max_return_sequences=2, max_lines=5,
                                                      request_timeout_s=10))


@pytest.fixture(scope="module")
def client(small_app):
    from fastapi.testclient import TestClient

    with TestClient(small_app) as c:
        yield c


@pytest.mark.parametrize("body", [{"model": "/etc/passwd"}, {"path": "../../secret"}, {"checkpoint": "/tmp/x"},
                                  {"prime": "jerry", "file": "~/.ssh/id_rsa"}])
def test_server_takes_no_file_paths(client, body):
    r = client.post("/api/generate", json=body)
    assert r.status_code == 422 and "Extra inputs are not permitted" in r.json()["detail"]


@pytest.mark.parametrize("url", ["/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/..%2F..%2Fetc%2Fpasswd",
                                 "/static//etc/passwd", "/static/app.js%00.py"])
def test_server_serves_no_files_from_disk(client, url):
    assert client.get(url).status_code == 404


def test_server_bounds_chunked_bodies(client):
    def chunks():
        for _ in range(100):
            yield b" " * 1000

    r = client.post("/api/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_server_bounds_generation_length(client):
    r = client.post("/api/generate", json={"max_new_tokens": 21})
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"]
    r = client.post("/api/generate", json={"max_new_tokens": 20, "seed": 1, "structured": False})
    assert r.status_code == 200 and len(r.json()["text"].split()) < 60


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_fields = {"prime": st.text(max_size=30) | st.sampled_from(["jerry", "george:", "\U0001F600", "jerry: hi\nelaine:"]),
           "max_new_tokens": st.integers(-5, 25), "max_lines": st.none() | st.integers(-1, 6),
           "temperature": st.floats(-1, 6), "top_k": st.none() | st.integers(-1, 50), "top_p": st.floats(-0.5, 1.5),
           "repetition_penalty": st.floats(-1, 11), "num_return_sequences": st.integers(0, 3),
           "seed": st.none() | st.integers(-1, 2**64), "cast": st.none() | st.lists(st.sampled_from(["jerry", "george", "x", ""]), max_size=3),
           "no_self_reply": st.booleans(), "self_reply_penalty": st.floats(-1, 120), "structured": st.booleans()}
_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={k: v | _json for k, v in _fields.items()}),
    _json,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies, path=st.sampled_from(["/api/generate", "/api/stream"]))
def test_server_fuzzed_json_bodies_never_500(client, body, path):
    if isinstance(body, dict) and "max_new_tokens" not in body:
        body = {**body, "max_new_tokens": 10}  # keep each generation tiny
    r = client.post(path, json=body)
    assert r.status_code in (200, 413, 422), (body, r.status_code, r.text)
    if r.status_code == 422:
        assert isinstance(r.json()["detail"], str) and "\n" not in r.json()["detail"]
    if path == "/api/stream" and r.status_code == 200:
        assert "internal error" not in r.text


schemathesis = pytest.importorskip("schemathesis")


def test_server_schemathesis_never_500(small_app):
    """Every operation of the OpenAPI schema, with schemathesis-generated requests (valid and not)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", small_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/generate", "/api/stream", "/health", "/api/model"}
    for operation in operations:
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.body, response.status_code, response.text[:300])
            assert "internal error" not in response.text

        check()
