"""checkpoint.py: save -> load gives identical logits; damaged or foreign files are refused."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import tvscript
from tvscript.checkpoint import CheckpointError, load_checkpoint, load_trainer_state, save_checkpoint
from tvscript.model import LSTMLanguageModel, ModelConfig
from tvscript.vocab import Vocab


def _model(tie=False):
    torch.manual_seed(0)
    vocab = Vocab(("<unk>", "\n", "jerry:", "hi", "."))
    return LSTMLanguageModel(ModelConfig(vocab_size=5, embed_dim=8, hidden_dim=8, tie_weights=tie)).eval(), vocab


@pytest.mark.parametrize("tie", [False, True])
def test_save_load_identical_logits(tmp_path, tie):
    model, vocab = _model(tie)
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "t"})
    loaded = load_checkpoint(tmp_path / "ck")
    idx = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model(idx)[0], loaded.model(idx)[0])
    assert loaded.vocab == vocab and loaded.meta["name"] == "t"


def test_half_precision_weights_load_as_float(tmp_path):
    model, vocab = _model()
    save_checkpoint(tmp_path / "ck", model, vocab, {}, dtype=torch.float16)
    loaded = load_checkpoint(tmp_path / "ck")
    idx = torch.tensor([[1, 2, 3]])
    assert torch.allclose(model(idx)[0], loaded.model(idx)[0], atol=1e-2)
    assert loaded.model.embedding.weight.dtype == torch.float32


def test_save_replaces_atomically_and_old_twin_is_used(tmp_path):
    model, vocab = _model()
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "one"})
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "two"})
    assert load_checkpoint(tmp_path / "ck").meta["name"] == "two"
    assert not any(p.name.startswith(".ck") for p in tmp_path.iterdir())  # no temp dirs left
    # a kill between the two renames leaves only ck.old: it is still found
    os.replace(tmp_path / "ck", tmp_path / "ck.old")
    assert load_checkpoint(tmp_path / "ck").meta["name"] == "two"


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, vocab = _model()
    save_checkpoint(tmp_path / "ck", model, vocab, {"name": "good"})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tvscript.checkpoint.save_file", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", model, vocab, {"name": "bad"})
    assert load_checkpoint(tmp_path / "ck").meta["name"] == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").unlink(), "missing model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]), "not a valid safetensors"),
    (lambda d: (d / "config.json").write_text("{not json"), "not JSON"),
    (lambda d: (d / "config.json").unlink(), "not a tvscript checkpoint"),
    (lambda d: (d / "vocab.json").write_text(json.dumps({"itos": ["<unk>", "a"]})), "different models"),
    (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()),
                                                          "model": {**json.loads((d / "config.json").read_text())["model"], "hidden_dim": 9}})),
     "do not match"),
])
def test_damaged_checkpoints_are_refused(tmp_path, damage, message):
    model, vocab = _model()
    save_checkpoint(tmp_path / "ck", model, vocab, {})
    damage(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=message) as err:
        tvscript.load(tmp_path / "ck")
    assert "\n" not in str(err.value)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, vocab = _model()
    save_checkpoint(tmp_path / "ck", model, vocab, {}, trainer_state={"step": torch.tensor(1)})
    (tmp_path / "ck" / "trainer_state.pt").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        load_trainer_state(tmp_path / "ck")
    torch.save({"x": _Exploit()}, tmp_path / "ck" / "trainer_state.pt")
    with pytest.raises(CheckpointError):
        load_trainer_state(tmp_path / "ck")
    # weights are safetensors: a pickle there is simply not a valid file
    (tmp_path / "ck" / "model.safetensors").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "ck")
    assert not (tmp_path / "PWNED").exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="no such"):
        tvscript.load(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a tvscript checkpoint"):
        tvscript.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a tvscript checkpoint config"):
        tvscript.load(tmp_path)


def test_int8_embedding_export_is_close_and_smaller(tmp_path):
    torch.manual_seed(0)
    vocab = Vocab(("<unk>", "\n", *[f"w{i}" for i in range(300)]))
    model = LSTMLanguageModel(ModelConfig(vocab_size=len(vocab), embed_dim=64, hidden_dim=16)).eval()
    save_checkpoint(tmp_path / "fp32", model, vocab, {})
    save_checkpoint(tmp_path / "small", model, vocab, {}, dtype=torch.float16, int8_embedding=True)
    small = load_checkpoint(tmp_path / "small")
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "small") < 0.4 * size(tmp_path / "fp32")
    idx = torch.randint(0, len(vocab), (2, 12))
    assert torch.allclose(model(idx)[0].softmax(-1), small.model(idx)[0].softmax(-1), atol=2e-3)
