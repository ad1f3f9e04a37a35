"""A character model that prices out-of-vocabulary words, for open-vocabulary bits/char.

A word model that maps rare words to ``<unk>`` gets them cheaply: one ``<unk>`` stands
for every unknown word at once. To compare models with different vocabularies fairly,
evaluation charges every ``<unk>`` target the cost of spelling its word out, character
by character, under this model: an interpolated Witten-Bell character 5-gram fit on the
model's own vocabulary (the word types of the training split), so it needs nothing
beyond the checkpoint.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

BOS, EOW, OTHER = "\x02", "\x03", "\x04"


class SpellingModel:
    def __init__(self, words: Iterable[str], order: int = 5):
        self.order = order
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        alphabet = {EOW, OTHER}
        for word in words:
            padded = BOS * (order - 1) + word + EOW
            alphabet.update(word)
            for i in range(order - 1, len(padded)):
                for k in range(order):
                    self.counts[k][padded[i - k : i]][padded[i]] += 1
        self.alphabet = frozenset(alphabet)
        self.totals = [{ctx: (sum(c.values()), len(c)) for ctx, c in level.items()} for level in self.counts]

    def _prob(self, context: str, char: str) -> float:
        p = 1.0 / len(self.alphabet)  # uniform floor; unseen characters share the OTHER slot
        for k in range(self.order):
            ctx = context[len(context) - k :] if k else ""
            total, types = self.totals[k].get(ctx, (0, 0))
            if total:
                p = (self.counts[k][ctx][char] + types * p) / (total + types)
        return p

    def cost_nats(self, word: str) -> float:
        """-ln P(word): every character and the end of the word."""
        chars = [c if c in self.alphabet else OTHER for c in word] + [EOW]
        padded = BOS * (self.order - 1)
        nll = 0.0
        for char in chars:
            nll -= math.log(self._prob(padded, char))
            padded = padded[1:] + char
        return nll
