"""The Python API and the one load path: ``tvscript.load(path) -> ScriptModel``.

The CLI, evaluation, the server and the benchmarks all load models through ``load``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from .checkpoint import CheckpointError, load_checkpoint, resolve
from .devices import pick_device
from .errors import TvscriptError
from .generate import GenerationConfig, generate_ids, new_seed, prime_tokens, resolve_cast
from .model import LSTMLanguageModel
from .quantize import stepper_for
from .tokenizer import Detokenizer, is_speaker_tag, tokenize_prime
from .vocab import Vocab

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "seinfeld"


def default_model_path() -> Path:
    """The shipped model, or $TVSCRIPT_MODEL when set."""
    return Path(os.environ.get("TVSCRIPT_MODEL") or SHIPPED_MODEL)


@dataclass
class Generation:
    """One finished generation: texts (one per sequence) and the seed that made them."""

    texts: list[str]
    seed: int


class ScriptModel:
    """A trained model with its vocabulary, ready to write scripts.

    ``int8``: generate through int8 copies of the weights on CPUs that support it
    (``quantize.py``: several times faster a word; the mean loss moves by < 0.005 nats).
    The copies are taken here, so build a new ScriptModel after more training.
    """

    def __init__(self, model: LSTMLanguageModel, vocab: Vocab, meta: dict[str, Any], path: Path, int8: bool = True):
        self.model, self.vocab, self.meta, self.path = model, vocab, meta, path
        self.step = stepper_for(model, int8)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.name

    def speakers(self) -> list[str]:
        return self.vocab.speakers()

    def encode_prime(self, prime: str) -> list[int]:
        """Prime text -> ids. A bare name becomes a speaker tag; unknown words are an error
        when nothing of the prime is known, else a note on stderr."""
        text = (prime or "").strip()
        if text and "\n" not in text and f"{text.lower().rstrip(':').strip()}:" in self.vocab.stoi:
            text = text.rstrip(":").strip() + ":"
        tokens = tokenize_prime(text)
        if tokens and is_speaker_tag(tokens[-1]) and tokens[-1] not in self.vocab.stoi:
            raise TvscriptError(f"unknown speaker {text[:-1]!r}; known speakers include {', '.join(self.speakers()[:8])}")
        ids, unknown = prime_tokens(self.vocab, tokens)
        if unknown and len(unknown) == len(tokens):
            raise TvscriptError(f"none of the prime's words are in the model's vocabulary ({', '.join(unknown[:5])}); try a character name such as 'jerry'")
        if unknown:
            print(f"note: words not in the vocabulary are read as <unk>: {', '.join(unknown[:10])}", file=sys.stderr)
        return ids

    def prepare(self, prime: str, **options: Any) -> tuple[list[int], GenerationConfig]:
        """Validated options with a concrete seed, and the prime's ids."""
        try:
            config = GenerationConfig(**options)
        except TypeError as err:
            raise TvscriptError(str(err)) from None
        if config.seed is None:
            config = replace(config, seed=new_seed())
        resolve_cast(self.vocab, config.cast)  # an unknown name fails here, before any output
        return self.encode_prime(prime), config

    def pieces(self, ids: list[int], config: GenerationConfig) -> Iterator[tuple[int, str]]:
        """Yield (sequence index, text piece) as tokens are generated; the prime comes first."""
        n = config.num_return_sequences
        detoks = [Detokenizer() for _ in range(n)]
        prime = self.vocab.decode(ids)
        for i, detok in enumerate(detoks):
            yield i, "".join(detok.piece(t) for t in prime)
        itos = self.vocab.itos
        for step_ids in generate_ids(self.model, self.vocab, ids, config, config.seed, self.step):
            for i, token_id in enumerate(step_ids.tolist()):
                if token_id >= 0:
                    yield i, detoks[i].piece(itos[token_id])

    def stream(self, prime: str = "jerry:", **options: Any) -> Iterator[str]:
        """Yield the script piece by piece (one word or punctuation mark at a time)."""
        ids, config = self.prepare(prime, **{**options, "num_return_sequences": 1})
        for _, piece in self.pieces(ids, config):
            yield piece

    def generate_batch(self, prime: str = "jerry:", **options: Any) -> Generation:
        """num_return_sequences scripts from one prime, generated as one batch."""
        ids, config = self.prepare(prime, **options)
        parts: list[list[str]] = [[] for _ in range(config.num_return_sequences)]
        for i, piece in self.pieces(ids, config):
            parts[i].append(piece)
        return Generation(["".join(p).rstrip("\n") + "\n" for p in parts], config.seed)

    def generate(self, prime: str = "jerry:", **options: Any) -> str:
        """The generated script (prime included) as one string."""
        return self.generate_batch(prime, **{**options, "num_return_sequences": 1}).texts[0]


def load(path: str | Path | None = None, device: str = "cpu", int8: bool = True) -> ScriptModel:
    """Load a run directory or a checkpoint directory (best/, last/) for generation
    (``int8``: see ``ScriptModel``)."""
    path = Path(path) if path is not None else default_model_path()
    if not resolve(path).exists():  # resolve: a kill mid-swap leaves the checkpoint as PATH.old
        hint = " (the shipped model is missing; train one with 'tvscript train')" if path == default_model_path() else ""
        raise CheckpointError(f"{path}: no such model directory{hint}")
    ckpt = load_checkpoint(path, pick_device(device))
    return ScriptModel(ckpt.model, ckpt.vocab, ckpt.meta, ckpt.path, int8=int8)


__all__ = ["load", "ScriptModel", "Generation", "GenerationConfig"]
