"""Weight-only int8 for generation on CPUs: a faster ``step`` when writing one word at a time.

At batch 1 a generation step is a handful of matrix-vector products over every weight of
the model (about 24 MB in fp32 for the shipped model): memory-bound, and too large to stay
in cache between steps next to the sampling work. ``Int8Stepper`` keeps each weight matrix
as int8 with one scale per output row (a quarter of the bytes) and multiplies through
``torch._weight_int8pack_mm`` with bf16 activations, which is several times faster than an
fp32 ``linear`` on CPUs with bf16 support; gates, the cell state and the log-softmax stay
in fp32. Rounding moves single log-probabilities by up to about a tenth of a nat and the
mean loss by far less (``tests/test_quantize.py`` bounds both, the latter on the shipped
model); ``benchmarks/generate_speed.py`` times both paths.

The stepper is a snapshot: it copies the weights when built, so a model that goes on
training needs a new one. Where the kernel is missing (other builds, other devices)
``stepper_for`` returns the model's own fp32 ``step``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .model import LSTMLanguageModel, State

Step = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]
# The kernel reads the inner dimension in blocks of 16 and returns garbage (or crashes) on a
# remainder, so weights and inputs are zero-padded up to a multiple of it.
K_BLOCK = 16


class Int8Linear:
    """y = x W^T (+ b) with W as int8 rows times a bf16 scale each. x: (N, in) -> (N, out) fp32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        weight = weight.detach().float()
        self.pad = -weight.size(1) % K_BLOCK
        weight = F.pad(weight, (0, self.pad))  # (out, in + pad)
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (out,)
        scale = scale.bfloat16().float()  # round first, so the int8 values fit the scale actually used
        self.qweight = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()  # (out, in + pad)
        self.scale = scale.bfloat16()
        self.bias = None if bias is None else bias.detach().float().clone()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, self.pad)) if self.pad else x
        y = torch._weight_int8pack_mm(x.bfloat16().contiguous(), self.qweight, self.scale).float()  # (N, out)
        return y if self.bias is None else y + self.bias


class Int8Stepper:
    """``model.step`` computed from int8 copies of the model's weights (a snapshot)."""

    def __init__(self, model: LSTMLanguageModel):
        self.embedding = model.embedding.weight.detach().float().clone()  # a row lookup: no matmul to speed up
        # One matmul per layer: gates = [x, h] @ [W_ih | W_hh]^T + (b_ih + b_hh), PyTorch's gate order i, f, g, o.
        self.layers = [Int8Linear(torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1),
                                  lstm.bias_ih_l0 + lstm.bias_hh_l0) for lstm in model.layers]
        self.adaptive = model.adaptive
        if self.adaptive:
            head: nn.AdaptiveLogSoftmaxWithLoss = model.head
            self.shortlist, self.cutoffs = head.shortlist_size, head.cutoffs
            self.head = Int8Linear(head.head.weight, head.head.bias)
            self.tails = [(Int8Linear(proj.weight), Int8Linear(out.weight)) for proj, out in head.tail]
        else:
            self.head = Int8Linear(model.head.weight, model.head.bias)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, V): log-probabilities for the adaptive head (as its ``log_prob``), else logits."""
        if not self.adaptive:
            return self.head(h)
        head_logprob = F.log_softmax(self.head(h), dim=-1)  # (N, shortlist + clusters)
        parts = [head_logprob[:, : self.shortlist]]
        for i, (proj, out) in enumerate(self.tails):
            cluster = F.log_softmax(out(proj(h)), dim=-1)  # (N, cluster size)
            parts.append(cluster + head_logprob[:, self.shortlist + i, None])
        return torch.cat(parts, dim=-1)  # (N, V)

    @torch.inference_mode()
    def __call__(self, idx: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = self.embedding[idx]  # (N, E)
        new_state = []
        for layer, (h, c) in zip(self.layers, state):
            gates = layer(torch.cat([x, h[0]], dim=-1))  # (N, 4H)
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c[0] + torch.sigmoid(i) * torch.tanh(g)  # (N, H)
            h = torch.sigmoid(o) * torch.tanh(c)
            new_state.append((h[None], c[None]))
            x = h
        return self.logits(x), tuple(new_state)


@lru_cache(maxsize=1)
def int8_supported() -> bool:
    """Whether this torch build runs the int8 kernel on this CPU."""
    try:
        weight, scale = torch.ones(8, K_BLOCK, dtype=torch.int8), torch.ones(8, dtype=torch.bfloat16)
        out = torch._weight_int8pack_mm(torch.ones(1, K_BLOCK, dtype=torch.bfloat16), weight, scale)
        return bool(out.float().eq(K_BLOCK).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def stepper_for(model: LSTMLanguageModel, int8: bool = True) -> Step:
    """The int8 stepper for a CPU model when asked for and supported, else ``model.step``."""
    if int8 and next(model.parameters()).device.type == "cpu" and int8_supported():
        return Int8Stepper(model)
    return model.step


__all__ = ["Int8Linear", "Int8Stepper", "int8_supported", "stepper_for"]
