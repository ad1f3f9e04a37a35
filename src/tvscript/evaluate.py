"""Held-out evaluation: loss, perplexity, bits per character and OOV rate.

Bits per character divide the total negative log-likelihood (in bits) by the characters
of the split's text, so models with different tokenizers compare fairly. ``<unk>`` must
not buy cheap probability, so ``bits_per_char`` also charges every ``<unk>`` target the
cost of spelling its word out (see spelling.py); ``bits_per_char_closed`` leaves that out.
``loss`` and ``perplexity`` are the usual closed-vocabulary word-level figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from .data import IGNORE, Stream, batchify, windows
from .model import LSTMLanguageModel, detach
from .spelling import SpellingModel
from .tokenizer import EOT, UNK
from .vocab import Vocab

EVAL_ROWS, EVAL_SEQ_LEN = 16, 256


@dataclass(frozen=True)
class LossReport:
    tokens: int
    nll: float  # total, in nats
    chars: int
    unk_targets: int
    spelling_nll: float = 0.0  # nats to spell out the words behind the <unk> targets

    @property
    def loss(self) -> float:
        return self.nll / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 50.0))

    @property
    def bits_per_char(self) -> float:
        return (self.nll + self.spelling_nll) / math.log(2) / max(self.chars, 1)

    @property
    def bits_per_char_closed(self) -> float:
        return self.nll / math.log(2) / max(self.chars, 1)

    @property
    def perplexity_open(self) -> float:
        return math.exp(min((self.nll + self.spelling_nll) / max(self.tokens, 1), 50.0))

    @property
    def oov_rate(self) -> float:
        return self.unk_targets / max(self.tokens, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "perplexity": self.perplexity, "perplexity_open": self.perplexity_open,
                "bits_per_char": self.bits_per_char, "bits_per_char_closed": self.bits_per_char_closed,
                "oov_rate": self.oov_rate}


@torch.inference_mode()
def evaluate_loss(
    model: LSTMLanguageModel,
    stream: Stream,
    *,
    rows: int = EVAL_ROWS,
    seq_len: int = EVAL_SEQ_LEN,
    unk_id: int = 0,
    speller: SpellingModel | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> LossReport:
    """Every target of the stream counted once; under DDP each rank takes every world_size-th row."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = max(1, min(rows, stream.num_targets))
    x, y = batchify(stream.ids, rows, pad=True)  # (R, L)
    x, y = x[rank::world_size].to(device), y[rank::world_size].to(device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    tokens = torch.zeros((), dtype=torch.float64, device=device)
    unk = torch.zeros((), dtype=torch.float64, device=device)
    state = model.init_state(x.size(0), device) if x.size(0) else None
    for _, xb, yb in windows(x, y, seq_len) if x.size(0) else ():
        _, loss, state = model(xb, state, yb)
        state = detach(state)
        count = (yb != IGNORE).sum()
        nll += loss.double() * count
        tokens += count
        unk += (yb == unk_id).sum()
    if world_size > 1:
        packed = torch.stack([nll, tokens, unk])
        dist.all_reduce(packed)
        nll, tokens, unk = packed
    model.train(was_training)
    spelling = sum(map(speller.cost_nats, stream.oov)) if speller is not None else 0.0
    return LossReport(int(tokens.item()), float(nll.item()), stream.chars, int(unk.item()), spelling)


def speller_for(vocab: Vocab) -> SpellingModel:
    """The spelling model of a vocabulary: its word types, specials left out."""
    return SpellingModel(t for t in vocab.itos if t not in (UNK, EOT))
