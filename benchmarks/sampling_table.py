"""Which sampling settings write scenes most like the show? A grid, measured against held-out text.

    python benchmarks/sampling_table.py --model runs/seinfeld --data data/Seinfeld_Scripts.txt \
        --samples 20 --json-out sampling.json

Every row generates ``--samples`` scenes (seeds ``--seed`` .. ``--seed + N - 1``, primed with
the four most frequent speakers in rotation) with ``script_metrics.compare_samples`` and
prints one line of a Markdown table. The grid:

* ``reference``: top_k=5, temperature 1.0, no nucleus (the classic course-project sampler);
* temperature 0.7 / 0.8 / 0.9 / 1.0  x  top_p 0.9 / 0.95  x  repetition_penalty 1.0 / 1.1;

each both unstructured (free sampling) and structured (the script-form rules); structured
rows also go through every ``--self-reply-penalties`` value (``ban``: no_self_reply).

Score (lower is closer to held-out text; the row with the lowest is marked)::

    |d2 - d2_h| / d2_h + |wpt - wpt_h| / wpt_h + |sr - sr_h| / max(sr_h, 0.01) + tv
    + (1 + 10 (copy - 0.02))  if copy > 2%
    + (1 + 10 (0.99 - wf))    if wf < 99%

with d2 distinct-2, wpt mean words per turn, sr self-reply rate, tv the total-variation
distance of the samples' speaker distribution from the held-out one with guest characters
pooled (``cast_tv_distance``: by name, every split is about 0.25 from every other, so the
by-name distance cannot tell settings apart), copy the verbatim-copy
rate of lines of 6+ words, wf the well-formed turn rate; ``_h`` marks the held-out value
(distinct-2 on held-out pseudo-scenes of the samples' size).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import tvscript
from tvscript.data import load_corpus
from tvscript.script_metrics import compare_samples

COPY_LIMIT = 0.02
WELL_FORMED_MIN = 0.99


def grid(temperatures: list[float], top_ps: list[float], penalties: list[float], modes: list[str],
         self_reply: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(row name, generation options) for every setting."""
    rows = []
    for mode in modes:
        structured = mode == "structured"
        for srp in self_reply if structured else ["0"]:
            rule = dict(no_self_reply=srp == "ban", self_reply_penalty=0.0 if srp == "ban" else float(srp))
            tag = f" srp={srp}" if structured else ""
            rows.append((f"{mode} reference top_k=5 T=1.0{tag}",
                         dict(temperature=1.0, top_k=5, top_p=1.0, repetition_penalty=1.0, structured=structured, **rule)))
            for t, p, rp in itertools.product(temperatures, top_ps, penalties):
                rows.append((f"{mode} T={t} top_p={p} rp={rp}{tag}",
                             dict(temperature=t, top_k=None, top_p=p, repetition_penalty=rp, structured=structured, **rule)))
    return rows


def _gap(value: float, target: float, floor: float = 1e-9) -> float:
    return abs(value - target) / max(abs(target), floor)


def score(m: dict[str, Any]) -> float:
    """Distance of the samples from held-out text (see the module docstring)."""
    s = (_gap(m["sample_distinct_2"], m["heldout_distinct_2"])
         + _gap(m["sample_words_per_turn_mean"], m["heldout_words_per_turn_mean"])
         + _gap(m["sample_self_reply_rate"], m["heldout_self_reply_rate"], floor=0.01)
         + m["cast_tv_distance"])
    if m["sample_copy_rate"] > COPY_LIMIT:
        s += 1 + 10 * (m["sample_copy_rate"] - COPY_LIMIT)
    if m["sample_well_formed_rate"] < WELL_FORMED_MIN:
        s += 1 + 10 * (WELL_FORMED_MIN - m["sample_well_formed_rate"])
    return s


COLUMNS = [  # header, metric key (without sample_/heldout_), format
    ("well-formed", "well_formed_rate", "{:.1%}"),
    ("unk", "unk_rate", "{:.2%}"),
    ("balanced", "balanced_rate", "{:.1%}"),
    ("self-reply", "self_reply_rate", "{:.1%}"),
    ("words/turn", "words_per_turn_mean", "{:.1f}"),
    ("sd", "words_per_turn_std", "{:.1f}"),
    ("distinct-1", "distinct_1", "{:.3f}"),
    ("distinct-2", "distinct_2", "{:.3f}"),
    ("distinct-3", "distinct_3", "{:.3f}"),
    ("rep-3gram", "repeated_trigram_rate", "{:.1%}"),
    ("copy", "copy_rate", "{:.1%}"),
    ("longest", "longest_shared_ngram", "{:d}"),
]


def table(rows: list[dict[str, Any]], best: str) -> str:
    head = ["setting", *[c[0] for c in COLUMNS], "speaker TV", "cast TV", "score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    first = rows[0]["metrics"]
    cells = [fmt.format(first[f"heldout_{key}"]) for _, key, fmt in COLUMNS]
    floors = [f"{first['heldout_speaker_tv_distance']:.3f}", f"{first['heldout_cast_tv_distance']:.3f}"]
    lines.append("| " + " | ".join(["*held-out text*", *cells, *floors, ""]) + " |")
    lines.append("| " + " | ".join(["*training split*", *[""] * len(COLUMNS), f"{first['train_speaker_tv_distance']:.3f}",
                                     f"{first['train_cast_tv_distance']:.3f}", ""]) + " |")
    for row in rows:
        m = row["metrics"]
        name = f"**{row['name']}** (best)" if row["name"] == best else row["name"]
        cells = [fmt.format(m[f"sample_{key}"]) for _, key, fmt in COLUMNS]
        lines.append("| " + " | ".join([name, *cells, f"{m['speaker_tv_distance']:.3f}", f"{m['cast_tv_distance']:.3f}",
                                         f"{row['score']:.3f}"]) + " |")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _self_reply_values(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    for value in values:
        if value != "ban":
            float(value)  # a ValueError is argparse's "invalid value" message
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="run or checkpoint directory")
    p.add_argument("--data", required=True, help="the corpus the model was trained on")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    p.add_argument("--samples", type=int, default=20, help="scenes per setting (default 20)")
    p.add_argument("--seed", type=int, default=0, help="scene i uses seed SEED+i in every row")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--temperatures", type=_floats, default=[0.7, 0.8, 0.9, 1.0])
    p.add_argument("--top-ps", type=_floats, default=[0.9, 0.95])
    p.add_argument("--penalties", type=_floats, default=[1.0, 1.1])
    p.add_argument("--modes", default="unstructured,structured", help="unstructured, structured or both")
    p.add_argument("--self-reply-penalties", type=_self_reply_values, default=["0", "2.5"],
                   help="for structured rows: logit cuts, or ban (default 0,2.5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json-out", help="also write every row's full metrics here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"unstructured", "structured"}:
        p.error("--modes takes unstructured, structured or both")

    model = tvscript.load(args.model, device=args.device)
    corpus = load_corpus(args.data, vocab=model.vocab)
    rows = []
    for name, options in grid(args.temperatures, args.top_ps, args.penalties, modes, args.self_reply_penalties):
        started = time.perf_counter()
        metrics = compare_samples(model, corpus, args.split, args.samples, seed=args.seed,
                                  max_new_tokens=args.max_new_tokens, **options)
        rows.append({"name": name, "options": options, "score": score(metrics), "metrics": metrics})
        print(f"{name}: score {rows[-1]['score']:.3f} ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
    best = min(rows, key=lambda r: r["score"])["name"]
    print(f"Sampling settings for {model.name} ({args.samples} scenes of {args.max_new_tokens} tokens each, "
          f"held-out split: {args.split}); lower score is closer to held-out text.\n")
    print(table(rows, best))
    print("\nHeld-out distinct-n and rep-3gram are shown for held-out text cut to the first row's scene size; "
          "each row's score uses held-out text cut to its own. The held-out speaker and cast TV are those of "
          f"{args.samples} held-out pseudo-scenes: the distance a real set of scenes of that size has; the "
          "training split's are those of the whole training split: what a perfect model of it would score.")
    print(f"\nbest: {best}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": str(args.model), "data": str(args.data), "split": args.split, "samples": args.samples,
            "seed": args.seed, "max_new_tokens": args.max_new_tokens, "best": best, "rows": rows,
        }, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
