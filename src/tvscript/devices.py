"""Which device to run on: the user's choice checked, or the best one available."""

from __future__ import annotations

import torch

from .errors import TvscriptError


def pick_device(name: str = "auto") -> torch.device:
    """A torch device for NAME (auto: cuda, then mps, then cpu); an unusable one is a TvscriptError."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise TvscriptError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TvscriptError(f"device {name!r}: CUDA is not available here (no GPU or a CPU-only torch); use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise TvscriptError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise TvscriptError(f"device {name!r}: MPS is not available here; use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on GPUs with bf16 and on CPUs with AVX512-BF16/AMX (oneDNN)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False
