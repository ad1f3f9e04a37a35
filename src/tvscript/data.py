"""Splits, encoding and truncated-BPTT batching of the token stream.

The corpus is split by turns, contiguously: first 90% train, next 5% valid, last 5%
test. Each split becomes one stream of token ids with an end-of-turn token in front
(the turn before it ended), so every token of the split is a prediction target.

Batching follows pytorch/examples' word_language_model. The stream of inputs
``x = s[:-1]`` and targets ``y = s[1:]`` is cut into B contiguous rows::

    stream  a b c d e f g h i j k l m n o p q r s t u v w x      (B = 4)

            ┌ a b c d e f ┐   row 0: the first quarter of the stream
    rows =  │ g h i j k l │   row 1
            │ m n o p q r │   row 2
            └ s t u v w x ┘   row 3

and read left to right in windows of T columns. Window k of the rows continues
window k-1 exactly, so the LSTM state of row r carries over from one batch to the
next (detached: gradients stop at the window edge, the state does not)::

    window 0 (T=3)     window 1
    ┌ a b c ┐          ┌ d e f ┐
    │ g h i │   then   │ j k l │       targets are the same picture shifted by one
    │ m n o │          │ p q r │
    └ s t u ┘          └ v w x ┘
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .corpus import Turn, read_turns
from .tokenizer import EOT, tokenize
from .vocab import Vocab

SPLITS = ("train", "valid", "test")
IGNORE = -100  # target id of padding; never counted in the loss


def split_turns(turns: Sequence[Turn], train: float = 0.9, valid: float = 0.05) -> dict[str, list[Turn]]:
    """Contiguous split by turns: [0, 90%) train, [90%, 95%) valid, [95%, 100%) test."""
    n = len(turns)
    a, b = int(n * train), int(n * (train + valid))
    return {"train": list(turns[:a]), "valid": list(turns[a:b]), "test": list(turns[b:])}


@dataclass(frozen=True)
class Stream:
    """A split as one stream of ids; ``chars`` is the text length for bits/char."""

    ids: torch.Tensor  # (N,) int64, starts with EOT
    chars: int
    oov: tuple[str, ...] = ()  # the words behind its <unk> ids, in order (to charge their spelling)

    @property
    def num_targets(self) -> int:
        return len(self.ids) - 1


def encode(turns: Sequence[Turn], vocab: Vocab) -> Stream:
    tokens = [EOT, *tokenize(turns)]
    ids = vocab.encode(tokens)
    oov = tuple(tokens[i] for i in (ids == vocab.unk_id).nonzero()[0])
    return Stream(torch.from_numpy(ids), sum(t.chars for t in turns), oov)


def shard(stream: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Contiguous 1/world_size of the stream; every rank gets the same length."""
    per_rank = (len(stream) - 1) // world_size + 1  # +1: the shards overlap by one token
    return stream[rank * (per_rank - 1) : rank * (per_rank - 1) + per_rank]


def batchify(stream: torch.Tensor, batch_size: int, pad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets as (B, L) rows; ``pad`` keeps every target (IGNORE fills the tail)."""
    x, y = stream[:-1], stream[1:]
    n = len(x)
    if pad:
        length = math.ceil(n / batch_size)
        fill = length * batch_size - n
        x = torch.cat([x, x.new_zeros(fill)])
        y = torch.cat([y, y.new_full((fill,), IGNORE)])
    else:
        length = n // batch_size
        if length == 0:
            raise ValueError(f"{n} tokens cannot fill {batch_size} rows; use a smaller --batch-size")
        x, y = x[: length * batch_size], y[: length * batch_size]
    return x.view(batch_size, length), y.view(batch_size, length)  # (B, L) each


def windows(x: torch.Tensor, y: torch.Tensor, seq_len: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(index, inputs, targets) windows of T columns, from window ``start`` on."""
    for k in range(start, num_windows(x.size(1), seq_len)):
        yield k, x[:, k * seq_len : (k + 1) * seq_len], y[:, k * seq_len : (k + 1) * seq_len]


def num_windows(length: int, seq_len: int) -> int:
    return math.ceil(length / seq_len)


@dataclass(frozen=True)
class Corpus:
    """A corpus file read, split, and encoded with one vocabulary."""

    vocab: Vocab
    streams: dict[str, Stream]
    turns: dict[str, list[Turn]]


def load_corpus(
    path: str,
    *,
    vocab: Vocab | None = None,
    min_freq: int = 1,
    max_vocab: int | None = None,
    speaker_column: str | None = None,
    text_column: str | None = None,
    encoding: str = "utf-8-sig",
) -> Corpus:
    """Read, split and encode a corpus; the vocabulary comes from the train split unless given."""
    turns = split_turns(read_turns(path, speaker_column=speaker_column, text_column=text_column, encoding=encoding))
    if vocab is None:
        vocab = Vocab.build(tokenize(turns["train"]), min_freq=min_freq, max_size=max_vocab)
    return Corpus(vocab, {name: encode(turns[name], vocab) for name in SPLITS}, turns)
