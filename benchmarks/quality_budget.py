"""Quality within a fixed wall-clock budget: held-out test perplexity and bits/char, tvscript vs baseline.

    python benchmarks/quality_budget.py --data data/Seinfeld_Scripts.txt --minutes 30 --json-out quality.json
    python benchmarks/quality_budget.py --data data/Seinfeld_Scripts.txt --minutes 0.2      # smoke check

One after the other, each with the whole machine (``--threads``) for ``--minutes``:

1. ``tvscript-default``: ``tvscript.train`` with the ``default`` preset and
   ``max_minutes=M`` into ``--out`` (default: a temporary directory). Its budget is
   tvscript's own wall-clock budget, so the validation passes it runs during training
   count against it; the model evaluated is the run's best checkpoint by validation loss
   (what ``tvscript.load(run_dir)`` loads). Scored with ``evaluate_loss`` on the test split
   (carried LSTM state, every test target once): tvscript's own inference mode.
2. ``baseline``: the reference recipe (benchmarks/baseline.py) trained for M minutes of
   steps (checked after every step), then scored on the test split in its own inference
   mode: every test target given the preceding 10 words (fewer at the very start), zero state.

Both report per-token perplexity, and bits/char = total NLL in bits / characters of the
test text (``corpus.streams['test'].chars``, the same for both, whatever the vocabulary).
Both charge every ``<unk>`` target the cost of spelling its word out under a character model
of the vocabulary (``tvscript.evaluate.speller_for``), so ``bits_per_char`` stays comparable
across vocabularies; ``bits_per_char_closed`` is the figure without that charge. Perplexities over
different vocabularies are not strictly comparable; the OOV rate of each is shown.

``--window-eval`` (on by default) also scores the tvscript model exactly as the baseline is
scored (10-word window, zero state), to separate the model from its longer context.
``--adapt`` (on by default) also scores it under adaptive evaluation (``tvscript.adapt``:
one SGD step after each scored window, and a cache of the unknown words seen so far).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

import baseline
import tvscript
from common import add_common_args, environment, print_table, write_json
from tvscript.adapt import AdaptConfig, adaptive_loss
from tvscript.data import Stream, load_corpus
from tvscript.evaluate import LossReport, evaluate_loss, speller_for
from tvscript.train import PRESETS, TrainConfig, train
from tvscript.vocab import Vocab


def window_report(next_log_probs: Callable[[torch.Tensor], torch.Tensor], stream: Stream, vocab: Vocab) -> LossReport:
    """The baseline's evaluation (10-word window per target) as a LossReport like evaluate_loss's."""
    nll, tokens = baseline.window_nll(next_log_probs, stream.ids)
    unk = int((stream.ids[1:] == vocab.unk_id).sum())
    spelling = sum(map(speller_for(vocab).cost_nats, stream.oov))
    return LossReport(tokens=tokens, nll=nll, chars=stream.chars, unk_targets=unk, spelling_nll=spelling)


def row(name: str, vocab: Vocab, report: LossReport, training: dict[str, Any]) -> dict[str, Any]:
    return {"contender": name, "vocab": len(vocab), **training, **report.to_dict()}


def run_tvscript(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    model_options, train_options = PRESETS["default"]
    config = TrainConfig(data=args.data, out=str(out), preset="default", max_minutes=args.minutes, device="cpu",
                         threads=args.threads, seed=args.seed, **train_options)
    start = time.perf_counter()
    run_dir = train(config, model_options, log=lambda m: print(f"[tvscript] {m}", file=sys.stderr), show_progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    training = {"budget_minutes": args.minutes, "wall_seconds": time.perf_counter() - start,
                "train_seconds": summary["train_seconds"], "steps": summary["steps"],
                "trained_tokens": summary["tokens"], "epochs": summary["epochs"]}
    scripter = tvscript.load(run_dir)  # the best checkpoint by validation loss
    model, vocab = scripter.model.eval(), scripter.vocab
    test = load_corpus(args.data, vocab=vocab).streams["test"]
    speller = speller_for(vocab)
    report = evaluate_loss(model, test, unk_id=vocab.unk_id, speller=speller)
    rows = [row("tvscript-default", vocab, report, training)]
    if args.adapt:
        adapted = adaptive_loss(model, test, AdaptConfig(), unk_id=vocab.unk_id, speller=speller)
        rows.append(row("tvscript-default, adaptive eval", vocab, adapted, training))
    if args.window_eval:  # forward without targets gives the last position's logits (log-probs if adaptive)
        windowed = window_report(lambda x: torch.log_softmax(model(x)[0].float(), dim=-1), test, vocab)
        rows.append(row("tvscript-default, 10-word window eval", vocab, windowed, training))
    return rows


def run_baseline(args: argparse.Namespace) -> list[dict[str, Any]]:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    corpus = load_corpus(args.data, min_freq=1)  # the reference keeps every training word
    model = baseline.new_model(len(corpus.vocab), args.seed)
    stats = baseline.train_for(model, corpus.streams["train"].ids, args.minutes * 60, seed=args.seed)
    model.eval()
    training = {"budget_minutes": args.minutes, "wall_seconds": time.perf_counter() - start,
                "train_seconds": stats["train_seconds"], "steps": stats["steps"], "trained_tokens": stats["tokens"],
                "epochs": stats["epochs"]}
    report = window_report(lambda x: torch.log_softmax(model.next_logits(x), dim=-1), corpus.streams["test"], corpus.vocab)
    return [row("baseline", corpus.vocab, report, training)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget of each (default: 30)")
    p.add_argument("--out", help="tvscript's run goes to OUT/tvscript-default (default: a temporary directory)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--window-eval", action=argparse.BooleanOptionalAction, default=True,
                   help="also score tvscript with the baseline's 10-word-window evaluation (default: on)")
    p.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=True,
                   help="also score tvscript under adaptive evaluation, tvscript.adapt's defaults (default: on)")
    p.add_argument("--only", choices=["tvscript", "baseline"], nargs="+", default=["tvscript", "baseline"],
                   help="run just these contenders (each needs the whole machine for its budget)")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be > 0")

    rows = []
    if "tvscript" in args.only:
        with tempfile.TemporaryDirectory(prefix="quality_budget-") as tmp:
            rows += run_tvscript(args, Path(args.out or tmp) / "tvscript-default")
    if "baseline" in args.only:
        rows += run_baseline(args)

    env = environment(args.threads)
    print(f"{env['cpu_model']}, torch {env['torch']}, {args.threads} threads; budget {args.minutes:g} minutes each, "
          f"run one after the other")
    print_table(rows, [("contender", "contender"), ("vocab", "vocab"), ("oov_rate", "test OOV"),
                       ("train_seconds", "train s"), ("steps", "steps"), ("trained_tokens", "trained tokens"),
                       ("epochs", "epochs"), ("perplexity", "test ppl"), ("bits_per_char", "bits/char"),
                       ("bits_per_char_closed", "bits/char closed")])
    write_json(args.json_out, {"benchmark": "quality_budget", "environment": env,
                               "settings": {k: getattr(args, k) for k in ("minutes", "seed", "data", "window_eval", "adapt")},
                               "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
