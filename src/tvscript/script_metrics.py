"""Script-quality metrics: how much generated scenes look like the show's real scripts.

Every metric reads script *text*: a scene is a list of ``corpus.Turn`` (``parse_scene``
parses one line per turn with ``corpus.parse_line``), so samples and held-out text are
measured the same way. Words are the word tokens of ``tokenizer.tokenize_text`` (letters
or digits, contractions whole; punctuation and glued ``@-@`` tokens are not words); a
literal ``<unk>`` in the text is one word. N-grams never cross a turn boundary.

Structure
    ``well_formed_rate``  turns with a speaker seen in the training split and non-empty
                          dialogue: some character besides spaces and brackets (``"?"`` is
                          dialogue, ``""`` and ``"()"`` are not; narration is not well formed)
    ``inline_tag_rate``   turns whose dialogue contains another known ``name:`` tag
    ``unk_rate``          words that are ``<unk>`` or not in the vocabulary
    ``balanced_rate``     turns whose ( ) and [ ] pair up and nest properly
    ``self_reply_rate``   adjacent speaker turns (no narration between) with one speaker
    ``tv_distance``       total-variation distance of two speaker distributions
    ``pool_speakers``     the recurring speakers (>= 1% of training turns) by name, every
                          other speaker in one ``<other>`` class: guest characters change
                          with each episode, so a split's guest names cannot be predicted
                          from the others' (the show's own training split is 0.27 from its
                          test split by name, 0.07 pooled)
Length and diversity
    ``words_per_turn_mean/std``  over turns with a speaker (population std)
    ``distinct_n``        unique n-grams / all n-grams over the whole set of scenes
    ``repeated_trigram_rate``    trigrams already seen earlier in the same scene (loops)
Copying (``TrainingIndex``)
    ``copy_rate``         lines of >= 6 words whose word sequence occurs contiguously
                          inside one training turn
    ``longest_shared_ngram``  longest word sequence of any line found in a training turn

The training index hashes every word n-gram of the training split with numpy (64-bit
random linear hashes, no per-n-gram Python objects); a verbatim copy is confirmed word by
word against the training text, so it has no false positives. It builds in about a second
for the Seinfeld corpus (~0.5M training words).

``compare_samples`` generates scenes with fixed seeds and reports every metric for the
samples (``sample_*``) and for the held-out split (``heldout_*``) in one flat dict.
"""

from __future__ import annotations

import re
import time
import weakref
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .corpus import Turn, parse_line
from .tokenizer import UNK, is_glued, tokenize_text

COPY_MIN_WORDS = 6  # a line must have this many words to count as a verbatim copy
DEFAULT_SAMPLE_TOKENS = 300
PRIME_SPEAKERS = 4  # compare_samples primes with the most frequent speakers in rotation
RECURRING_SHARE = 0.01  # a speaker with this share of training turns is part of the regular cast
OTHER_SPEAKERS = "<other>"

_WORDLIKE = re.compile(r"[^\W_]")
_TAG_COLON = re.compile(r":(?=\s|$)")
_DIALOGUE = re.compile(r"[^\s()\[\]]")
_BRACKETS = {"(": ")", "[": "]"}
_CLOSERS = {")": "(", "]": "["}
MAX_NAME_WORDS = 4  # longest speaker name looked for inside dialogue

Scene = Sequence[Turn]


# -- parsing ------------------------------------------------------------------------------

def parse_scene(text: str) -> list[Turn]:
    """The turns of a script text, one per non-blank line."""
    return [turn for turn in map(parse_line, text.splitlines()) if turn is not None]


def as_scenes(scenes: Iterable[str | Scene]) -> list[list[Turn]]:
    """Scenes given as texts or lists of turns -> lists of turns."""
    return [parse_scene(s) if isinstance(s, str) else list(s) for s in scenes]


def words_of(text: str) -> list[str]:
    """Word tokens of a turn's text; ``<unk>`` counts as one word."""
    out: list[str] = []
    for i, piece in enumerate(text.split(UNK)):
        if i:
            out.append(UNK)
        out.extend(t for t in tokenize_text(piece) if _WORDLIKE.search(t) and not is_glued(t))
    return out


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _turns(scenes: Iterable[Scene]) -> list[Turn]:
    return [turn for scene in scenes for turn in scene]


# -- structure ----------------------------------------------------------------------------

def has_dialogue(text: str) -> bool:
    """Whether a turn says something: any character besides spaces and brackets
    (``"?"`` and ``"(shrugs)"`` do, ``""`` and ``"()"`` do not)."""
    return bool(_DIALOGUE.search(text))


def is_well_formed(turn: Turn, speakers: Container) -> bool:
    """A known speaker tag followed by non-empty dialogue."""
    return turn.speaker is not None and turn.speaker in speakers and has_dialogue(turn.text)


def well_formed_rate(turns: Sequence[Turn], speakers: Container) -> float:
    return _ratio(sum(is_well_formed(t, speakers) for t in turns), len(turns))


def has_inline_tag(text: str, speakers: Container) -> bool:
    """Whether dialogue text holds a known speaker's ``name:`` tag (a turn inside a turn)."""
    for match in _TAG_COLON.finditer(text):
        before = text[: match.start()].split(" ")
        for k in range(1, min(MAX_NAME_WORDS, len(before)) + 1):
            if " ".join(before[-k:]).strip() in speakers:
                return True
    return False


def inline_tag_rate(turns: Sequence[Turn], speakers: Container) -> float:
    return _ratio(sum(has_inline_tag(t.text, speakers) for t in turns), len(turns))


def unk_rate(turns: Sequence[Turn], vocabulary: Container) -> float:
    """Share of words that are ``<unk>`` or not in the vocabulary."""
    words = [w for t in turns for w in words_of(t.text)]
    return _ratio(sum(w == UNK or w not in vocabulary for w in words), len(words))


def is_balanced(text: str) -> bool:
    """( ) and [ ] close in order: every closer matches the last open bracket, none stay open."""
    stack: list[str] = []
    for ch in text:
        if ch in _BRACKETS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if not stack or stack.pop() != _CLOSERS[ch]:
                return False
    return not stack


def balanced_rate(turns: Sequence[Turn]) -> float:
    return _ratio(sum(is_balanced(t.text) for t in turns), len(turns))


def speaker_counts(scenes: Iterable[Scene], skip_first: bool = False) -> Counter[str]:
    """Turns per speaker (narration not counted); ``skip_first`` drops each scene's first
    turn, whose speaker a prime chose rather than the model."""
    counts: Counter[str] = Counter()
    for scene in scenes:
        counts.update(t.speaker for t in scene[1 if skip_first else 0 :] if t.speaker)
    return counts


def tv_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance, 1/2 sum |p - q|, of two count (or probability) tables.

    0 for the same distribution, 1 for disjoint supports; 0 when both are empty and 1 when
    only one is.
    """
    total_p, total_q = sum(p.values()), sum(q.values())
    if not total_p or not total_q:
        return 0.0 if total_p == total_q else 1.0
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0) / total_p - q.get(k, 0) / total_q) for k in keys)


def recurring_speakers(counts: Mapping[str, int], share: float = RECURRING_SHARE) -> frozenset[str]:
    """Speakers with at least ``share`` of all turns in ``counts``."""
    total = sum(counts.values())
    return frozenset(s for s, k in counts.items() if total and k >= share * total)


def pool_speakers(counts: Mapping[str, int], recurring: Container) -> Counter[str]:
    """Counts of the recurring speakers by name and of everyone else as ``OTHER_SPEAKERS``."""
    pooled: Counter[str] = Counter()
    for speaker, k in counts.items():
        pooled[speaker if speaker in recurring else OTHER_SPEAKERS] += k
    return pooled


def self_reply_rate(scenes: Iterable[Scene]) -> float:
    """Share of adjacent turn pairs, both with a speaker, where the speaker answers themselves."""
    same = pairs = 0
    for scene in scenes:
        for a, b in zip(scene, scene[1:]):
            if a.speaker and b.speaker:
                pairs += 1
                same += a.speaker == b.speaker
    return _ratio(same, pairs)


# -- length and diversity -----------------------------------------------------------------

def words_per_turn(turns: Sequence[Turn]) -> tuple[float, float]:
    """Mean and population standard deviation of words per speaker turn."""
    counts = np.array([len(words_of(t.text)) for t in turns if t.speaker], dtype=np.float64)
    if not len(counts):
        return 0.0, 0.0
    return float(counts.mean()), float(counts.std())


def _ngrams(words: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return zip(*(words[i:] for i in range(n)))


def distinct_n(scenes: Iterable[Scene], n: int) -> float:
    """Unique word n-grams / all word n-grams, over every turn of every scene."""
    grams = [g for scene in scenes for t in scene for g in _ngrams(words_of(t.text), n)]
    return _ratio(len(set(grams)), len(grams))


def repeated_ngram_rate(scenes: Iterable[Scene], n: int = 3) -> float:
    """Share of n-grams that already occurred earlier in the same scene (loops)."""
    repeated = total = 0
    for scene in scenes:
        seen: set[tuple[str, ...]] = set()
        for turn in scene:
            for gram in _ngrams(words_of(turn.text), n):
                total += 1
                repeated += gram in seen
                seen.add(gram)
    return _ratio(repeated, total)


# -- copying ------------------------------------------------------------------------------

_SEP, _OOV = -1, -2  # ids of a turn boundary and of a word the training split lacks


class TrainingIndex:
    """Word n-grams of the training split, hashed, for verbatim-copy checks.

    ``ids`` is the training text as word ids with ``-1`` after every turn; the n-gram
    (``n`` words, default 6) starting at each position is hashed into ``_hashes`` (sorted,
    with ``_starts`` their positions). Other lengths are hashed on demand and cached.
    """

    def __init__(self, turns: Iterable[Turn], n: int = COPY_MIN_WORDS, seed: int = 0):
        self.n = n
        self.word_ids: dict[str, int] = {}
        lookup = self.word_ids.setdefault
        flat: list[int] = []
        for turn in turns:
            flat.extend(lookup(w, len(self.word_ids)) for w in words_of(turn.text))
            flat.append(_SEP)
        self.ids = np.array(flat, dtype=np.int64)
        rng = np.random.default_rng(seed)
        self._random = rng.integers(1, 2**63, size=len(self.word_ids) + 1, dtype=np.uint64)
        self._mult = rng.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)
        hashes, valid = self.hash_windows(self.ids, n)
        starts = np.flatnonzero(valid)
        order = np.argsort(hashes[starts], kind="stable")
        self._starts = starts[order]
        self._hashes = hashes[self._starts]
        self._sets: dict[int, np.ndarray] = {n: np.unique(self._hashes)}

    @property
    def words(self) -> int:
        return int((self.ids >= 0).sum())

    def hash_windows(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hash of the k words starting at every position, and whether the window is all
        words of one turn (no boundary, no unknown word)."""
        count = max(len(ids) - k + 1, 0)
        hashes = np.zeros(count, dtype=np.uint64)
        if count == 0 or k == 0:
            return hashes, np.ones(count, dtype=bool)
        values = self._random[np.where(ids >= 0, ids, len(self._random) - 1)]
        for j in range(k):
            hashes += values[j : j + count] * self._mult[j % len(self._mult)]
        bad = np.concatenate([[0], np.cumsum(ids < 0)])
        return hashes, bad[k : k + count] == bad[:count]

    def _set(self, k: int) -> np.ndarray:
        if k not in self._sets:
            hashes, valid = self.hash_windows(self.ids, k)
            self._sets[k] = np.unique(hashes[valid])
        return self._sets[k]

    def encode(self, lines: Iterable[Sequence[str]]) -> np.ndarray:
        """Word lists -> one id array, ``-1`` after each line, ``-2`` for unknown words."""
        get = self.word_ids.get
        flat: list[int] = []
        for words in lines:
            flat.extend(get(w, _OOV) for w in words)
            flat.append(_SEP)
        return np.array(flat, dtype=np.int64)

    def occurs(self, words: Sequence[str]) -> bool:
        """Whether the word sequence (at least n words) occurs contiguously in one training turn."""
        query = self.encode([words])[:-1]
        m = len(query)
        if m < self.n:
            raise ValueError(f"occurs() needs at least {self.n} words, got {m}")
        if (query < 0).any():
            return False
        first = self.hash_windows(query[: self.n], self.n)[0][0]
        lo = np.searchsorted(self._hashes, first, side="left")
        hi = np.searchsorted(self._hashes, first, side="right")
        if lo == hi:
            return False
        starts = self._starts[lo:hi]
        starts = starts[starts + m <= len(self.ids)]
        window = self.ids[starts[:, None] + np.arange(m)[None, :]]  # (candidates, m)
        return bool((window == query[None, :]).all(axis=1).any())

    def copy_rate(self, turns: Iterable[Turn], min_words: int | None = None) -> tuple[float, int]:
        """Share of lines of at least ``min_words`` (default n) words that occur verbatim in a
        training turn, and how many lines were long enough to count."""
        min_words = max(min_words or self.n, self.n)
        lines = [w for w in (words_of(t.text) for t in turns) if len(w) >= min_words]
        return _ratio(sum(self.occurs(w) for w in lines), len(lines)), len(lines)

    def longest_shared_ngram(self, turns: Iterable[Turn]) -> int:
        """Length in words of the longest word sequence of any line that also occurs inside
        a training turn (binary search over lengths; one hashed set per length tried)."""
        lines = [words_of(t.text) for t in turns]
        ids = self.encode(lines)
        lo, hi = 0, max((len(w) for w in lines), default=0)  # lo is shared, hi+1 is not

        def shared(k: int) -> bool:
            hashes, valid = self.hash_windows(ids, k)
            return bool(np.isin(hashes[valid], self._set(k), assume_unique=False).any())

        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if shared(mid) else (lo, mid - 1)
        return lo


_INDEX_CACHE: dict[int, tuple[weakref.ref, TrainingIndex]] = {}


def training_index(corpus: Any) -> TrainingIndex:
    """The TrainingIndex of ``corpus.turns["train"]``, built once per corpus object."""
    key = id(corpus)
    hit = _INDEX_CACHE.get(key)
    if hit is not None and hit[0]() is corpus:
        return hit[1]
    index = TrainingIndex(corpus.turns["train"])
    _INDEX_CACHE.clear()
    _INDEX_CACHE[key] = (weakref.ref(corpus), index)
    return index


# -- all metrics --------------------------------------------------------------------------

def script_metrics(
    scenes: Iterable[str | Scene],
    *,
    speakers: Container,
    vocabulary: Container,
    index: TrainingIndex | None = None,
) -> dict[str, float | int]:
    """Every per-set metric of the scenes (see the module docstring), as a flat dict."""
    scenes = as_scenes(scenes)
    turns = _turns(scenes)
    mean, std = words_per_turn(turns)
    out: dict[str, float | int] = {
        "scenes": len(scenes),
        "turns": len(turns),
        "words": sum(len(words_of(t.text)) for t in turns),
        "well_formed_rate": well_formed_rate(turns, speakers),
        "inline_tag_rate": inline_tag_rate(turns, speakers),
        "unk_rate": unk_rate(turns, vocabulary),
        "balanced_rate": balanced_rate(turns),
        "self_reply_rate": self_reply_rate(scenes),
        "words_per_turn_mean": mean,
        "words_per_turn_std": std,
        **{f"distinct_{n}": distinct_n(scenes, n) for n in (1, 2, 3)},
        "repeated_trigram_rate": repeated_ngram_rate(scenes, 3),
    }
    if index is not None:
        out["copy_rate"], out["copy_lines"] = index.copy_rate(turns)
        out["longest_shared_ngram"] = index.longest_shared_ngram(turns)
    return out


def pseudo_scenes(turns: Sequence[Turn], words_per_scene: float, count: int | None = None) -> list[list[Turn]]:
    """Cut a split's turns into consecutive scenes of about ``words_per_scene`` words (a scene
    ends with the turn that reaches it), then keep ``count`` of them spread evenly."""
    scenes: list[list[Turn]] = []
    current: list[Turn] = []
    size = 0
    for turn in turns:
        current.append(turn)
        size += len(words_of(turn.text))
        if size >= words_per_scene:
            scenes.append(current)
            current, size = [], 0
    if current and (not scenes or size >= words_per_scene / 2):
        scenes.append(current)
    if count is not None and count < len(scenes):
        picks = np.linspace(0, len(scenes) - 1, count).round().astype(int)
        scenes = [scenes[i] for i in picks]
    return scenes


def prime_speakers(model: Any, cast: Sequence[str] | None = None, k: int = PRIME_SPEAKERS) -> list[str]:
    """The k most frequent speakers of the model (of the cast, when one is given)."""
    known = model.speakers()
    if cast:
        wanted = {c.strip().lower().rstrip(":") for c in cast}
        chosen = [s for s in known if s in wanted][:k]
        return chosen or [c.strip().lower().rstrip(":") for c in cast][:k]
    return known[:k]


def generate_samples(model: Any, n: int, seed: int = 0, **generation_options: Any) -> list[str]:
    """n scenes, scene i with seed ``seed + i``, primed with the main speakers in rotation."""
    options = {"max_new_tokens": DEFAULT_SAMPLE_TOKENS, **generation_options}
    options.pop("num_return_sequences", None)
    options.pop("seed", None)
    primes = prime_speakers(model, options.get("cast"))
    return [model.generate(f"{primes[i % len(primes)]}:", seed=seed + i, **options) for i in range(n)]


def compare_samples(model: Any, corpus: Any, split: str, n: int, seed: int = 0, **generation_options: Any) -> dict[str, Any]:
    """Generate n scenes (seeds seed..seed+n-1) and measure them next to the held-out split.

    Keys: ``samples``, ``sample_seed``, ``sample_seconds``, ``sample_<metric>`` and
    ``heldout_<metric>`` for every metric of ``script_metrics``, ``speaker_tv_distance``
    (samples' speakers, primed first turns left out, vs the whole split),
    ``heldout_speaker_tv_distance`` (the same for n held-out pseudo-scenes: the distance a
    real set of n scenes has, a floor for the samples') and ``train_speaker_tv_distance``
    (the training split's speakers vs the held-out split's: what a perfect model of the
    training scripts would score). ``cast_tv_distance`` and its ``heldout_``/``train_`` twins
    are the same three with speakers pooled by ``pool_speakers``; ``recurring_speakers`` lists
    the names kept. Held-out structure, length, unk,
    self-reply and copy metrics use the whole split; distinct-n and repeated trigrams use
    n pseudo-scenes with as many words as the average sample, since both depend on size.
    """
    started = time.perf_counter()
    texts = generate_samples(model, n, seed, **generation_options)
    seconds = time.perf_counter() - started
    samples = as_scenes(texts)
    index = training_index(corpus)
    speakers = frozenset(t.speaker for t in corpus.turns["train"] if t.speaker)
    vocabulary = corpus.vocab.stoi
    heldout = list(corpus.turns[split])

    sample = script_metrics(samples, speakers=speakers, vocabulary=vocabulary, index=index)
    full = script_metrics([heldout], speakers=speakers, vocabulary=vocabulary, index=index)
    size = max(sample["words"] / max(len(samples), 1), 1.0)
    chunks = pseudo_scenes(heldout, size, n)
    matched = script_metrics(chunks, speakers=speakers, vocabulary=vocabulary)
    for key in ("distinct_1", "distinct_2", "distinct_3", "repeated_trigram_rate"):
        full[key] = matched[key]
    full["scenes"], full["words_per_scene"] = len(chunks), size
    sample["words_per_scene"] = sample["words"] / max(len(samples), 1)

    result: dict[str, Any] = {"samples": n, "sample_seed": seed, "sample_seconds": seconds}
    result.update({f"sample_{k}": v for k, v in sample.items() if k != "scenes"})
    result.update({f"heldout_{k}": v for k, v in full.items()})
    reference = speaker_counts([heldout])
    training = speaker_counts([corpus.turns["train"]])
    recurring = recurring_speakers(training)
    against = {"": speaker_counts(samples, skip_first=True), "heldout_": speaker_counts(chunks), "train_": training}
    for prefix, counts in against.items():
        result[f"{prefix}speaker_tv_distance"] = tv_distance(counts, reference)
        result[f"{prefix}cast_tv_distance"] = tv_distance(pool_speakers(counts, recurring), pool_speakers(reference, recurring))
    result["recurring_speakers"] = sorted(recurring, key=lambda s: -training[s])
    return result


__all__ = [
    "TrainingIndex", "as_scenes", "balanced_rate", "compare_samples", "distinct_n", "generate_samples",
    "has_dialogue", "has_inline_tag", "inline_tag_rate", "is_balanced", "is_well_formed", "parse_scene", "pool_speakers",
    "pseudo_scenes", "recurring_speakers", "repeated_ngram_rate", "script_metrics", "self_reply_rate", "speaker_counts", "training_index",
    "tv_distance", "unk_rate", "well_formed_rate", "words_of", "words_per_turn",
]
