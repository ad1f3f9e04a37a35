"""Script generation: carried LSTM state, one model step per new word, script-form rules.

``generate_ids`` runs the prime once, then feeds back one token per step for all
sequences at once (num_return_sequences is the batch). ``ScriptForm`` keeps the output
well-formed when ``structured`` is on: every turn starts with a speaker tag (from the
cast, drawn without a nucleus cut; the previous speaker's tag made less likely by
``self_reply_penalty`` or banned by ``no_self_reply``), a tag is followed by dialogue,
brackets close before the turn ends, ``<unk>`` is never drawn, and the scene ends at a
turn boundary.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .errors import TvscriptError
from .model import LSTMLanguageModel, State
from .sampling import sample
from .vocab import Vocab

GRACE_TOKENS = 64  # past max_new_tokens, this many more to finish the turn, then it is closed
# Hard bounds for every caller (CLI, API, server): past them a request is a mistake, not a script.
MAX_NEW_TOKENS = 100_000
MAX_RETURN_SEQUENCES = 1024
MAX_TEMPERATURE = 100.0  # past this the distribution is uniform anyway; huge values overflow to nan
MIN_TEMPERATURE = 1e-3  # other than 0 (greedy): below this float32 logits / temperature can overflow to nan
PENALTY_RANGE = (1e-3, 1e3)  # likewise for the repetition penalty, which divides or multiplies logits
MAX_SELF_REPLY_PENALTY = 100.0  # a logit cut; past this it is a ban, which no_self_reply says plainly


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling options, named as Hugging Face names them."""

    max_new_tokens: int = 300
    # Defaults: the best structured row of the sampling table in docs/quality.md.
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None
    max_lines: int | None = None
    cast: tuple[str, ...] | None = None  # only these speakers
    no_self_reply: bool = False  # never let a speaker answer themselves
    self_reply_penalty: float = 2.5  # logit cut on the previous speaker's tag: docs/quality.md
    structured: bool = True

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.max_new_tokens <= MAX_NEW_TOKENS, f"max_new_tokens must be in [1, {MAX_NEW_TOKENS}], got {self.max_new_tokens}"),
            (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE,
             f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {self.temperature}"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be at least 1, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (PENALTY_RANGE[0] <= self.repetition_penalty <= PENALTY_RANGE[1],
             f"repetition_penalty must be in [{PENALTY_RANGE[0]:g}, {PENALTY_RANGE[1]:g}], got {self.repetition_penalty}"),
            (1 <= self.num_return_sequences <= MAX_RETURN_SEQUENCES,
             f"num_return_sequences must be in [1, {MAX_RETURN_SEQUENCES}], got {self.num_return_sequences}"),
            (0 <= self.self_reply_penalty <= MAX_SELF_REPLY_PENALTY,
             f"self_reply_penalty must be in [0, {MAX_SELF_REPLY_PENALTY:g}], got {self.self_reply_penalty}"),
            (self.max_lines is None or self.max_lines >= 1, f"max_lines must be at least 1, got {self.max_lines}"),
            (self.seed is None or 0 <= self.seed < 2**63, f"seed must be in [0, 2^63), got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TvscriptError(message)


@dataclass
class ScriptForm:
    """Per-sequence state of the script-form rules; ``banned()`` is the mask for the next draw."""

    vocab: Vocab
    batch: int
    cast_ids: torch.Tensor | None = None
    no_self_reply: bool = False
    is_speaker: torch.Tensor = field(init=False)  # (V,) bool
    at_turn_start: torch.Tensor = field(init=False)  # (N,) bool
    after_tag: torch.Tensor = field(init=False)  # (N,) bool: last token was a speaker tag
    after_open: torch.Tensor = field(init=False)  # (N,) bool: last token opened a bracket
    depth: torch.Tensor = field(init=False)  # (N, 2) open "(" and "[" in this turn
    last_speaker: torch.Tensor = field(init=False)  # (N,) id, -1 for none

    def __post_init__(self) -> None:
        v = self.vocab
        self.is_speaker = torch.zeros(len(v), dtype=torch.bool)
        self.is_speaker[v.speaker_ids()] = True
        self.allowed_speakers = self.is_speaker.clone()
        if self.cast_ids is not None:
            self.allowed_speakers = torch.zeros_like(self.is_speaker)
            self.allowed_speakers[self.cast_ids] = True
        # Glued brackets ("word@(@word") open or close without a space: never drawn in structured mode.
        self.glued_brackets = [v.stoi[t] for t in ("@(@", "@)@", "@[@", "@]@") if t in v.stoi]
        self.opens = torch.tensor([v.stoi.get(t, -1) for t in ("(", "[")])
        self.closes = torch.tensor([v.stoi.get(t, -1) for t in (")", "]")])
        self.at_turn_start = torch.ones(self.batch, dtype=torch.bool)
        self.after_tag = torch.zeros(self.batch, dtype=torch.bool)
        self.after_open = torch.zeros(self.batch, dtype=torch.bool)
        self.depth = torch.zeros(self.batch, 2, dtype=torch.long)
        self.last_speaker = torch.full((self.batch,), -1, dtype=torch.long)

    def update(self, ids: torch.Tensor) -> None:
        """Advance the rules past tokens ids (N,)."""
        eot = ids == self.vocab.eot_id
        tag = self.is_speaker[ids]
        self.last_speaker = torch.where(tag, ids, self.last_speaker)
        self.after_tag = tag
        self.after_open = (ids[:, None] == self.opens[None]).any(-1)
        opened = (ids[:, None] == self.opens[None]).long()  # (N, 2)
        closed = (ids[:, None] == self.closes[None]).long()
        self.depth = torch.where(eot[:, None], 0, (self.depth + opened - closed).clamp(min=0))
        self.at_turn_start = eot

    def penalise_self_reply(self, logits: torch.Tensor, penalty: float) -> torch.Tensor:
        """Lower the previous speaker's tag logit by ``penalty`` at a turn start, (N, V) -> (N, V)."""
        rows = self.at_turn_start & (self.last_speaker >= 0)
        if penalty == 0 or not bool(rows.any()):
            return logits
        logits = logits.clone()
        logits[rows, self.last_speaker[rows]] -= penalty
        return logits

    def banned(self, finishing: torch.Tensor) -> torch.Tensor:
        """(N, V) bool of tokens that would break the form; ``finishing`` rows must end their turn."""
        v = self.vocab
        banned = self.is_speaker[None].expand(self.batch, -1).clone()  # tags only at a turn start
        banned[:, v.unk_id] = True
        banned[:, self.glued_brackets] = True
        start = self.at_turn_start
        banned[start] = ~self.allowed_speakers
        if self.no_self_reply:
            rows = start & (self.last_speaker >= 0)
            banned[rows, self.last_speaker[rows]] = True
            # a one-person cast would have nothing left: then allow the repeat
            stuck = rows & banned.all(-1)
            banned[stuck, self.last_speaker[stuck]] = False
        inside = ~start
        open_ = inside & (self.depth > 0).any(-1)
        banned[open_, v.eot_id] = True  # close brackets before the turn ends
        banned[self.after_tag, v.eot_id] = True  # a tag is followed by dialogue
        for kind in range(2):
            if self.opens[kind] >= 0:
                banned[open_, self.opens[kind]] = True  # no nesting
            if self.closes[kind] >= 0:
                banned[inside & (self.depth[:, kind] == 0), self.closes[kind]] = True  # only close what is open
                banned[self.after_open, self.closes[kind]] = True  # no empty "()"
        # Over budget: open nothing new, close what is open, then end the turn.
        for idx in self.opens[self.opens >= 0]:
            banned[finishing & inside, idx] = True
        force = finishing & inside & ~self.after_tag & ~self.after_open
        if bool(force.any()):
            only = torch.ones(len(v), dtype=torch.bool)
            only[v.eot_id] = False
            closing = torch.ones(len(v), dtype=torch.bool)
            closing[self.closes[self.closes >= 0]] = False
            still_open = (self.depth > 0).any(-1)
            banned[force & ~still_open] = only
            banned[force & still_open] = closing | banned[force & still_open]
        return banned


def resolve_cast(vocab: Vocab, cast: tuple[str, ...] | None) -> torch.Tensor | None:
    if not cast:
        return None
    ids, unknown = [], []
    for name in cast:
        token = f"{name.strip().lower().rstrip(':')}:"
        (ids.append(vocab.stoi[token]) if token in vocab.stoi else unknown.append(name))
    if unknown:
        known = ", ".join(vocab.speakers()[:8])
        raise TvscriptError(f"unknown cast member(s): {', '.join(unknown)} (the model knows e.g. {known})")
    return torch.tensor(ids)


def new_seed() -> int:
    return secrets.randbits(63)


@torch.inference_mode()
def generate_ids(
    model: LSTMLanguageModel,
    vocab: Vocab,
    prime_ids: list[int],
    config: GenerationConfig,
    seed: int,
    step: Callable[[torch.Tensor, State], tuple[torch.Tensor, State]] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token id of every sequence, (N,), one model step each.

    The prime runs through ``model``; every later token through ``step`` (default
    ``model.step``; ``quantize.stepper_for`` gives a faster one). A finished sequence
    (max_lines reached) yields -1 from then on; the iterator stops when all are finished
    or the budget (plus the grace to end a turn) is spent.
    """
    device = next(model.parameters()).device
    step = step or model.step
    n = config.num_return_sequences
    generator = torch.Generator().manual_seed(seed)
    prime = torch.tensor([prime_ids or [vocab.eot_id]], device=device).expand(n, -1)  # (N, P)
    logits, _, state = model(prime, None)  # (N, V)
    form = ScriptForm(vocab, n, resolve_cast(vocab, config.cast), config.no_self_reply) if config.structured else None
    if form is not None:
        last = prime[:, -1].cpu()
        form.update(last)
        speakers = [i for i in prime_ids if form.is_speaker[i]]
        form.last_speaker[:] = speakers[-1] if speakers else -1
    seen = torch.zeros(n, len(vocab), dtype=torch.bool)
    seen[:, torch.tensor(prime_ids or [vocab.eot_id])] = True
    lines = torch.zeros(n, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    limit = config.max_new_tokens + (GRACE_TOKENS if form is not None else 0)
    for t in range(limit):
        finishing = torch.full((n,), t >= config.max_new_tokens)
        logits = logits.cpu()
        banned, top_p = None, config.top_p
        if form is not None:
            banned = form.banned(finishing)
            logits = form.penalise_self_reply(logits, config.self_reply_penalty)
            # The nucleus cuts a distribution's unreliable tail; for the next speaker that tail is
            # the guest cast, who speak a large share of the show's turns: draw from all of it.
            top_p = torch.where(form.at_turn_start, 1.0, config.top_p)  # (N,)
        ids = sample(
            logits, generator, temperature=config.temperature, top_k=config.top_k, top_p=top_p,
            repetition_penalty=config.repetition_penalty, seen=seen, banned=banned,
        )  # (N,)
        ids = torch.where(done, -1, ids)
        yield ids
        live = ~done
        seen[live.nonzero().squeeze(-1), ids[live]] = True
        if form is not None:
            form.update(ids.clamp(min=0))
        lines += (ids == vocab.eot_id).long()
        if config.max_lines is not None:
            done |= lines >= config.max_lines
        if form is not None and t >= config.max_new_tokens - 1:
            done |= ids == vocab.eot_id  # the budget is spent and the turn has ended
        if bool(done.all()) or t + 1 == limit:
            return
        logits, state = step(ids.clamp(min=0).to(device), state)  # (N, V): no step past the last word


def prime_tokens(vocab: Vocab, tokens: list[str]) -> tuple[list[int], list[str]]:
    """Ids of the prime tokens and the words not in the vocabulary."""
    unknown = [t for t in tokens if t not in vocab.stoi]
    return [vocab.stoi.get(t, vocab.unk_id) for t in tokens], unknown

