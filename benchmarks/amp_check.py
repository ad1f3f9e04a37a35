"""Does bf16 autocast train to the same loss as fp32? The check behind the presets' ``amp``.

    python benchmarks/amp_check.py --data data/Seinfeld_Scripts.txt --steps 300 --json-out amp_check.json

Builds tvscript's ``Trainer`` for a preset twice from the same seed (same initial weights,
same batches, same dropout draws), once with ``amp`` off and once on, and steps each
``--steps`` times through ``Trainer.train_step``, the step ``Trainer.run`` takes. Then both
are evaluated on the valid split in fp32. Prints the mean training loss of the last 50
steps, the valid loss and the seconds the steps took, for each. Where the CPU has no bf16,
the second run says so and is skipped.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from common import add_common_args, environment, print_table, write_json
from tvscript.data import load_corpus, windows
from tvscript.devices import bf16_supported
from tvscript.evaluate import evaluate_loss
from tvscript.model import ModelConfig
from tvscript.train import PRESETS, TrainConfig, Trainer

LAST_STEPS = 50


def run(args: argparse.Namespace, corpus: Any, amp: bool) -> dict[str, Any]:
    model_options, train_options = PRESETS[args.preset]
    config = TrainConfig(data=args.data, out="unused", preset=args.preset, device="cpu", threads=args.threads,
                         seed=args.seed, **{**train_options, "amp": amp})
    # The run directory is never written: only Trainer.run saves, and it is not called.
    trainer = Trainer(config, ModelConfig(vocab_size=len(corpus.vocab), **model_options), corpus, Path(config.out),
                      log=lambda message: None)
    trainer.model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for k, xb, yb in windows(trainer.x, trainer.y, config.seq_len):
        if k >= args.steps:
            break
        losses.append(trainer.train_step(xb, yb).item())
    seconds = time.perf_counter() - start
    trainer.model.eval()
    valid = evaluate_loss(trainer.model, corpus.streams["valid"], unk_id=corpus.vocab.unk_id)
    return {"contender": "bf16 autocast" if amp else "fp32", "steps": len(losses),
            "train_loss_last": statistics.fmean(losses[-LAST_STEPS:]), "valid_loss": valid.loss, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default: 300)")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    if args.steps < LAST_STEPS:
        p.error(f"--steps must be at least {LAST_STEPS}")
    torch.set_num_threads(args.threads)
    corpus = load_corpus(args.data, min_freq=PRESETS[args.preset][1]["min_freq"])
    rows = [run(args, corpus, amp=False)]
    if bf16_supported(torch.device("cpu")):
        rows.append(run(args, corpus, amp=True))
    else:
        print("this CPU has no bf16: only the fp32 run")
    env = environment(args.threads)
    print(f"{env['cpu_model']}, torch {env['torch']}, {args.threads} threads; preset {args.preset}, {args.steps} steps each")
    print_table(rows, [("contender", "contender"), ("train_loss_last", f"train loss (last {LAST_STEPS} steps)"),
                       ("valid_loss", "valid loss"), ("seconds", "seconds")])
    write_json(args.json_out, {"benchmark": "amp_check", "environment": env, "preset": args.preset,
                               "steps": args.steps, "seed": args.seed, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
