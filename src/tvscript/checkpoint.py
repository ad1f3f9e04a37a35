"""Checkpoints: one way to save, one way to load, never unpickling anything.

A checkpoint is a directory::

    model.safetensors    weights (safetensors: plain tensors, no code)
    config.json          {"format", "version", "model": ModelConfig, "train": TrainConfig, "data", "metrics"}
    vocab.json           {"itos": [...]}
    trainer_state.pt     optional: optimizer, scheduler, step, data position, LSTM state, RNG;
                         only tensors and plain containers, read with torch.load(weights_only=True)

Directories are written into a temporary sibling and swapped in with renames, so a kill
at any moment leaves either the old or the new checkpoint complete, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import TvscriptError
from .model import LSTMLanguageModel, ModelConfig
from .vocab import Vocab

FORMAT = "tvscript-checkpoint"
VERSION = 1
WEIGHTS, CONFIG, VOCAB, TRAINER_STATE = "model.safetensors", "config.json", "vocab.json", "trainer_state.pt"
EMBEDDING_SCALE = "embedding.weight_scale"  # present when the embedding is stored as int8


class CheckpointError(TvscriptError):
    """A directory that is not a complete, consistent tvscript checkpoint."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class Checkpoint:
    model: LSTMLanguageModel
    vocab: Vocab
    meta: dict[str, Any]  # config.json as read
    path: Path


def _weights(model: LSTMLanguageModel, dtype: torch.dtype, int8_embedding: bool) -> dict[str, torch.Tensor]:
    tensors = model.state_dict()
    if model.config.tie_weights:
        tensors.pop("head.weight")  # the same tensor as embedding.weight
    out = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in tensors.items()}
    if int8_embedding:
        # The embedding is most of a small model's bytes; one scale per row keeps int8 close.
        weight = tensors["embedding.weight"].detach().float().cpu()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127  # (V, 1)
        out["embedding.weight"] = torch.round(weight / scale).to(torch.int8).contiguous()
        out[EMBEDDING_SCALE] = scale.to(dtype).contiguous()
    return out


def _dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    scale = tensors.pop(EMBEDDING_SCALE, None)
    if scale is not None:
        tensors["embedding.weight"] = tensors["embedding.weight"].float() * scale.float()
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def save_checkpoint(
    path: Path,
    model: LSTMLanguageModel,
    vocab: Vocab,
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    int8_embedding: bool = False,
) -> None:
    """Write a complete checkpoint directory at ``path``, replacing any old one atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        save_file(_weights(model, dtype, int8_embedding), str(tmp / WEIGHTS))
        config = {"format": FORMAT, "version": VERSION, **meta, "model": model.config.to_dict()}
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        (tmp / VOCAB).write_text(json.dumps({"itos": list(vocab.itos)}, ensure_ascii=False), encoding="utf-8")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    old = path.with_name(path.name + ".old")
    if path.exists():  # path is complete: any .old is stale
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)  # from here until the next rename only .old is complete
    # else a kill between the renames left only .old: it stays until the new one is in place
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def resolve(path: Path) -> Path:
    """The complete checkpoint at ``path``, or its ``.old`` twin left by an interrupted swap."""
    path = Path(path)
    if (path / CONFIG).exists():
        return path
    old = path.with_name(path.name + ".old")
    if (old / CONFIG).exists():
        return old
    return path


MAX_JSON_BYTES = 64 * 1024 * 1024  # config.json and vocab.json: a real vocabulary is well under 10 MB


def read_meta(path: Path) -> dict[str, Any]:
    path = resolve(path)
    try:
        if (path / CONFIG).stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path / CONFIG}: larger than {MAX_JSON_BYTES:,} bytes; not a tvscript checkpoint config")
        meta = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a tvscript checkpoint (no {CONFIG}); pass a run directory made by 'tvscript train'") from None
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: deeply nested JSON
        raise CheckpointError(f"{path / CONFIG}: unreadable or not JSON ({err.__class__.__name__}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG}: not a tvscript checkpoint config")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} is not supported (expected {VERSION})")
    return meta


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load weights, config and vocabulary; check that they agree. Runs no code from the files."""
    path = resolve(Path(path))
    if path.is_file():
        raise CheckpointError(f"{path}: is a file, not a checkpoint directory; pass the folder that holds {CONFIG} "
                              "(a run directory made by 'tvscript train')")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    meta = read_meta(path)
    vocab = Vocab.load(path / VOCAB)
    try:
        config = ModelConfig(**meta["model"])
    except (TypeError, KeyError, TvscriptError) as err:  # TvscriptError: absurd sizes, refused before allocating
        raise CheckpointError(f"{path / CONFIG}: bad model config ({err})") from None
    if config.vocab_size != len(vocab):
        raise CheckpointError(f"{path}: config says {config.vocab_size} words but vocab.json has {len(vocab)}; the files are from different models")
    try:
        tensors = load_file(str(path / WEIGHTS))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing {WEIGHTS}") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path / WEIGHTS}: not a valid safetensors file ({str(err)[:80]}); the checkpoint is damaged") from None
    stored = sum(t.numel() for t in tensors.values())
    if stored < config.min_parameters():  # checked before the model is allocated: config.json may be absurd
        raise CheckpointError(f"{path}: weights do not match config.json (it describes at least {config.min_parameters():,} "
                              f"parameters, {WEIGHTS} holds {stored:,}); the files are from different models")
    model = LSTMLanguageModel(config)
    try:
        missing, unexpected = model.load_state_dict(_dequantize(tensors), strict=False)
    except RuntimeError:
        raise CheckpointError(f"{path}: weights do not match config.json (tensor shapes differ)") from None
    allowed = {"head.weight"} if config.tie_weights else set()
    if unexpected or set(missing) - allowed:
        raise CheckpointError(f"{path}: weights do not match config.json (missing {sorted(set(missing) - allowed)[:3]}, unexpected {unexpected[:3]})")
    model.to(device).eval()
    return Checkpoint(model, vocab, meta, path)


def load_trainer_state(path: Path) -> dict[str, Any]:
    path = resolve(Path(path)) / TRAINER_STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; this checkpoint cannot be resumed") from None
    except Exception as err:  # weights_only refuses pickled code with UnpicklingError and friends
        raise CheckpointError(f"{path}: refused or unreadable trainer state ({err.__class__.__name__}); it may be damaged or not from tvscript") from None


def export_checkpoint(src: Path, dst: Path, dtype: torch.dtype = torch.float16, int8_embedding: bool = False) -> Path:
    """A compact copy of a checkpoint for sharing: weights only, in ``dtype``, no trainer state."""
    ckpt = load_checkpoint(src)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version", "model")}
    save_checkpoint(Path(dst), ckpt.model, ckpt.vocab, meta, dtype=dtype, int8_embedding=int8_embedding)
    return Path(dst)
