"""Adaptive evaluation: the model keeps learning from the text it has already scored.

Static evaluation freezes the weights, so a model trained on seasons 1-8 meets season 9's
new guests and running jokes as strangers from its first line to its last. Dynamic
evaluation (Krause et al., 2018) reads the held-out stream in order, one window at a
time: it scores the window with the current weights, *then* takes one SGD step on that
window's loss and carries the LSTM state on::

    stream   w0 w1 w2 w3 | w4 w5 w6 w7 | w8 ...        (window = 4)
             score, step   score, step   score ...
             (weights θ0)  (weights θ1)  (θ2)

Every target is scored before any update has seen it, so the total is the log-likelihood
of a proper sequential predictor, comparable with the static figure.

Unknown words get the same treatment. Static evaluation charges each ``<unk>`` the cost
of spelling its word out (spelling.py). Here the spelling model is mixed with a cache of
the unknown words seen so far:
``p(word | <unk>) = λ · (share of word among the last N unknown words) + (1 - λ) · p_spell(word)``.
So a new guest costs a full spelling the first time and a few bits after that. This is
still a distribution over all strings, so bits/char stay an honest open-vocabulary figure.
"""

from __future__ import annotations

import copy
import math
from collections import Counter, deque
from dataclasses import asdict, dataclass

import torch

from .data import Stream
from .errors import TvscriptError
from .evaluate import LossReport
from .model import LSTMLanguageModel, detach
from .spelling import SpellingModel


@dataclass(frozen=True)
class AdaptConfig:
    """Chosen on the valid split (docs/results.md, "Adaptive evaluation")."""

    lr: float = 0.3  # plain SGD step after each window
    window: int = 16  # targets scored between two steps
    unk_cache: float = 0.5  # λ: weight of the unknown-word cache in p(word | <unk>)
    unk_cache_size: int = 200  # the last N unknown words

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise TvscriptError(f"adapt lr must be a number >= 0, got {self.lr}")
        if not 1 <= self.window <= 100_000:
            raise TvscriptError(f"adapt window must be between 1 and 100000 tokens, got {self.window}")
        if not 0.0 <= self.unk_cache < 1.0:
            raise TvscriptError(f"unknown-word cache weight must be in [0, 1), got {self.unk_cache}")
        if self.unk_cache_size < 1:
            raise TvscriptError(f"unknown-word cache size must be >= 1, got {self.unk_cache_size}")

    def to_dict(self) -> dict:
        return asdict(self)


class UnknownWordCache:
    """p(word | <unk>) mixing the recent unknown words with a spelling model."""

    def __init__(self, speller: SpellingModel, weight: float, size: int):
        self.speller, self.weight = speller, weight
        self.recent: deque[str] = deque(maxlen=size)
        self.counts: Counter[str] = Counter()

    def cost_nats(self, word: str) -> float:
        """-ln p(word | <unk>) given the words added so far."""
        spelled = self.speller.cost_nats(word)
        if not self.recent:
            return spelled
        share = self.counts[word] / len(self.recent)
        if share == 0.0:  # kept in log space: exp(-spelled) underflows for a long enough word
            return spelled - math.log(1 - self.weight)
        return -math.log(self.weight * share + (1 - self.weight) * math.exp(-spelled))

    def add(self, word: str) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.counts[self.recent[0]] -= 1
        self.recent.append(word)
        self.counts[word] += 1

    def total_nats(self, words: tuple[str, ...] | list[str]) -> float:
        """Cost of a sequence of unknown words, each priced before it joins the cache."""
        total = 0.0
        for word in words:
            total += self.cost_nats(word)
            self.add(word)
        return total


def adaptive_nll(model: LSTMLanguageModel, ids: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
    """Per-target NLL in nats, (N-1,), of the stream ``ids`` (N,) under dynamic evaluation.

    Works on a copy: the caller's model is left as it was.
    """
    # Tensors made under inference_mode (a caller's, or a copy taken in one) cannot be saved
    # for backward, so the copy and the ids are made here.
    with torch.inference_mode(False), torch.enable_grad():
        out = torch.empty(len(ids) - 1, dtype=torch.float64)
        model = copy.deepcopy(model).eval()  # eval: no dropout; the weights still take gradients
        device = next(model.parameters()).device
        sgd = torch.optim.SGD(model.parameters(), lr=config.lr)
        ids = ids.to(device).clone()
        state = model.init_state(1, device)
        for start in range(0, len(ids) - 1, config.window):
            y = ids[start + 1 : start + 1 + config.window][None]  # (1, T)
            x = ids[start : start + y.size(1)][None]  # (1, T)
            h, state = model.hidden(x, state)  # (1, T, D)
            nll = model.token_nll(h.reshape(-1, h.size(-1)), y.reshape(-1))  # (T,)
            out[start : start + y.size(1)] = nll.detach().double().cpu()
            if config.lr > 0:  # score first, learn after
                sgd.zero_grad()
                nll.mean().backward()
                sgd.step()
            state = detach(state)
    return out


def adaptive_loss(
    model: LSTMLanguageModel, stream: Stream, config: AdaptConfig, *, unk_id: int, speller: SpellingModel | None = None
) -> LossReport:
    """``evaluate_loss``'s report under dynamic evaluation and the unknown-word cache."""
    nll = adaptive_nll(model, stream.ids, config)
    unk = int((stream.ids[1:] == unk_id).sum())
    spelling = 0.0
    if speller is not None:
        spelling = UnknownWordCache(speller, config.unk_cache, config.unk_cache_size).total_nats(stream.oov)
    return LossReport(len(nll), float(nll.sum()), stream.chars, unk, spelling)
