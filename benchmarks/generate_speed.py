"""Generation speed at batch 1: words per second and per-word latency, tvscript vs the baseline.

    python benchmarks/generate_speed.py --model models/seinfeld --json-out generate_speed.json

* ``tvscript``: ``tvscript.load(--model)`` (default: the shipped ``models/seinfeld``), default
  sampling options, ``max_new_tokens`` words from the prime. Timed through
  ``ScriptModel.stream``, which runs the same code as ``generate`` (both consume
  ``ScriptModel.pieces``) and yields once per generated word, so each word's latency can
  be taken: one LSTM step per word on the carried state, through int8 weights
  (``tvscript/quantize.py``) where the CPU supports them. The script-form rules may add up
  to a few dozen words past the budget to end the last turn; every generated word counts.
* ``tvscript-fp32``: the same with ``load(..., int8=False)``: the fp32 weights.
* ``baseline``: benchmarks/baseline.py's generator (whole 10-word window re-run from a
  zero state for every word, top-5 sampling) with a reference-size model (256/256/2, full
  softmax) of tvscript's vocabulary size. Its weights are random (seeded): the work per
  word does not depend on the weights, only on the sizes, so the timing is the trained
  model's.

Repeats alternate between the two (after one untimed warm-up each). Words per second =
words / seconds over all repeats; latency = the time from one word to the next (the first
word's includes reading the prime), mean, p50 and p95 over all words of all repeats.
Peak RSS: each contender loads and generates once more in its own 'spawn' process
(VmHWM, see common.py); the target is under 500 MB.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import baseline
import tvscript
from common import add_common_args, environment, peak_rss_mb, percentile, print_table, run_isolated, write_json
from tvscript.api import SHIPPED_MODEL
from tvscript.checkpoint import VOCAB, resolve
from tvscript.quantize import Int8Stepper
from tvscript.vocab import Vocab


def tvscript_words(model: tvscript.ScriptModel, args: argparse.Namespace, seed: int) -> Iterator[Any]:
    pieces = model.stream(args.prime, max_new_tokens=args.max_new_tokens, seed=seed)
    next(pieces)  # the prime's own text comes first, with no model work; taken before the clock starts
    return pieces


def contender(name: str, args: argparse.Namespace) -> Callable[[int], Iterator[Any]]:
    """A function seed -> iterator of generated words, its model loaded."""
    torch.set_num_threads(args.threads)
    if name.startswith("tvscript"):
        scripter = tvscript.load(args.model, int8=name == "tvscript")
        return lambda seed: tvscript_words(scripter, args, seed)
    # Only the vocabulary's size and the prime/padding ids are used: the baseline's process
    # reads vocab.json alone, so its peak RSS holds no tvscript model.
    vocab = Vocab.load(resolve(Path(args.model)) / VOCAB)
    model = baseline.new_model(len(vocab), seed=0)
    prime_id = vocab.stoi.get(args.prime.strip(), vocab.eot_id)
    return lambda seed: baseline.generate(model, prime_id, vocab.eot_id, args.max_new_tokens, seed=seed)


def time_words(words: Iterator[Any]) -> list[float]:
    """Seconds from the start (or the previous word) to each word."""
    gaps, last = [], time.perf_counter()
    for _ in words:
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


def rss_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of loading and one generation, alone in a spawned process."""
    run = contender(name, args)
    words = len(time_words(run(0)))
    return {**peak_rss_mb(), "rss_run_words": words}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, data=False)
    p.add_argument("--model", default=str(SHIPPED_MODEL) if SHIPPED_MODEL.exists() else None,
                   help=f"a tvscript run/checkpoint directory (default: {SHIPPED_MODEL} when it exists)")
    p.add_argument("--max-new-tokens", type=int, default=400)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--prime", default="jerry:")
    p.add_argument("--no-rss", action="store_true", help="skip the per-contender peak-RSS processes")
    args = p.parse_args(argv)
    if not args.model or not Path(args.model).exists():
        p.error(f"no model: {SHIPPED_MODEL} is missing; pass --model RUN_DIR")
    if min(args.max_new_tokens, args.repeats) < 1:
        p.error("--max-new-tokens and --repeats must be at least 1")
    torch.set_num_threads(args.threads)

    names = ("tvscript", "tvscript-fp32", "baseline")
    scripter = tvscript.load(args.model)  # for the table: sizes, and whether int8 runs here
    runs = {name: contender(name, args) for name in names}
    for run in runs.values():
        time_words(run(0))  # warm-up, untimed
    gaps: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, list[int]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            times = time_words(runs[name](repeat + 1))
            gaps[name] += times
            counts[name].append(len(times))
    memory = {} if args.no_rss else {name: run_isolated(rss_child, name, args) for name in names}

    rows = []
    for name in names:
        g = gaps[name]
        rows.append({"contender": name, "words": sum(counts[name]), "words_per_run": counts[name],
                     "seconds": sum(g), "seconds_per_script": sum(g) / args.repeats, "words_per_second": len(g) / sum(g),
                     "latency_ms_mean": 1000 * statistics.fmean(g), "latency_ms_p50": 1000 * percentile(g, 0.5),
                     "latency_ms_p95": 1000 * percentile(g, 0.95), **memory.get(name, {})})
    c = scripter.model.config
    rows[0]["model"] = f"{args.model} ({c.embed_dim}/{c.hidden_dim}/{c.num_layers})"
    rows[1]["model"] = rows[0]["model"] + ", fp32 weights"
    rows[0]["model"] += ", int8 weights" if isinstance(scripter.step, Int8Stepper) else ", fp32 weights (no int8 kernel here)"
    rows[2]["model"] = "256/256/2 full softmax, random weights (timing does not depend on weights)"
    for row in rows:
        row["x_baseline"] = row["words_per_second"] / rows[2]["words_per_second"]

    env = environment(args.threads)
    print(f"{env['cpu_model']}, torch {env['torch']}, {args.threads} threads; vocabulary {len(scripter.vocab):,}; "
          f"{args.repeats} repeats of {args.max_new_tokens} words at batch 1")
    print_table(rows, [("contender", "contender"), ("words", "words"), ("seconds_per_script", "s per script"),
                       ("words_per_second", "words/s"),
                       ("x_baseline", "x baseline"), ("latency_ms_mean", "latency ms mean"),
                       ("latency_ms_p50", "p50"), ("latency_ms_p95", "p95"), ("peak_rss_mb", "peak RSS MB")])
    write_json(args.json_out, {"benchmark": "generate_speed", "environment": env, "vocab_size": len(scripter.vocab),
                               "settings": {k: getattr(args, k) for k in ("model", "max_new_tokens", "repeats", "prime")},
                               "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
