"""Vocabulary: token <-> id, built from the training split only, saved as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TvscriptError
from .tokenizer import EOT, UNK, is_speaker_tag


@dataclass(frozen=True)
class Vocab:
    """Tokens sorted by training frequency (id 0 is <unk>), as adaptive softmax needs."""

    itos: tuple[str, ...]
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.itos or self.itos[0] != UNK:
            raise TvscriptError("vocabulary must start with <unk>")
        object.__setattr__(self, "stoi", {token: i for i, token in enumerate(self.itos)})
        if len(self.stoi) != len(self.itos):
            raise TvscriptError("vocabulary has duplicate tokens")

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        counts = Counter(tokens)
        counts.pop(UNK, None)
        kept = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_freq]
        if EOT not in kept:
            kept.insert(0, EOT)
        if max_size is not None:
            kept = kept[: max_size - 1]
        return cls((UNK, *kept))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return 0

    @property
    def eot_id(self) -> int:
        return self.stoi[EOT]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def speaker_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.itos) if is_speaker_tag(t)]

    def speakers(self) -> list[str]:
        """Speaker names, most frequent first."""
        return [self.itos[i][:-1] for i in self.speaker_ids()]

    @classmethod
    def load(cls, path: Path, max_bytes: int = 64 * 1024 * 1024) -> "Vocab":
        try:
            if Path(path).stat().st_size > max_bytes:
                raise TvscriptError(f"{path}: larger than {max_bytes:,} bytes; not a tvscript vocabulary")
            itos = json.loads(Path(path).read_text(encoding="utf-8"))["itos"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: [[[[...
            raise TvscriptError(f"{path}: not a readable vocabulary file ({err.__class__.__name__})") from None
        if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
            raise TvscriptError(f"{path}: 'itos' must be a list of strings; not a tvscript vocabulary")
        try:
            return cls(tuple(itos))
        except TvscriptError as err:  # no <unk> first, duplicates
            raise TvscriptError(f"{path}: {err}") from None
