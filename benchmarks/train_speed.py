"""Training throughput: loss-bearing tokens per second of four recipes, side by side in one run.

    python benchmarks/train_speed.py --data data/Seinfeld_Scripts.txt --json-out train_speed.json

Contenders (all on the CPU, fp32 unless the default preset turns on bf16 autocast):

* ``baseline``: the reference recipe (benchmarks/baseline.py): 10-word windows, 128 a batch,
  one loss-bearing token per window, Adam, zero state per batch; vocabulary min_freq=1;
* ``tvscript-default``: the ``default`` preset's model and TrainConfig (batch, seq_len,
  optimizer, schedule, clip, min_freq, amp) in tvscript's own Trainer; each step is
  ``Trainer.train_step`` (what ``Trainer.run`` calls: autocast forward, zero_grad, backward,
  clip, optimizer and scheduler step, carried state detached), then ``loss.item()``;
* ``examples-tbptt``: a plain TBPTT LSTM like pytorch/examples' word_language_model at the
  reference size (Embedding 256, LSTM 256 x 2, dropout 0.2, full-softmax Linear), batch 20
  x bptt 35, plain SGD at lr 20 with clip 0.25 (what that example does); vocabulary min_freq=1;
* ``tvscript-256``: tvscript-default with hidden_dim 256 (so 256/256/2, the reference size)
  and everything else unchanged: separates model size from method.

Each contender is warmed up, then timed for ``--steps`` steps in each of ``--rounds``
rounds, the contenders taking turns within a round (so a machine that gets busier or
quieter affects all alike). A step's time includes fetching its batch (the baseline's
DataLoader collation is part of its recipe). The rate is loss-bearing tokens (targets
that enter the loss) over the timed seconds.

Model FLOPs utilisation. Training matmul FLOPs per loss-bearing token, with forward +
backward = 3 x forward and a multiply-add = 2 FLOPs::

    LSTM layer (input i, hidden h), per position:   2 * 4h * (i + h)      (4 gates, input + hidden matmuls)
    full softmax (input d, vocabulary V):           2 * d * V
    adaptive softmax:  2 * d * (shortlist + clusters)                           (head, every token)
                       + sum_k share_k * 2 * (d * p_k + p_k * size_k)            (tail k: projection p_k,
                                                                                  cluster of size_k, run only
                                                                                  for the share_k of training
                                                                                  targets that fall in it)
    per token = 3 * positions_run_per_target * (LSTM layers + output layer)

positions_run_per_target is 1 for TBPTT (every position is a target) and 10 for the
baseline, which runs a whole window, and projects all 10 positions onto the vocabulary,
for one target. Element-wise work (gates' nonlinearities, dropout, softmax) is not
counted. The peak is the fastest of three square torch.matmul sizes timed in the same run
(fp32, and bf16); MFU =
tokens/s x FLOPs/token / peak (the bf16 peak for a contender trained under bf16 autocast).

Peak RSS: each contender again in its own 'spawn' process (build, warm up, a few steps),
read from VmHWM (see common.py); ``--no-rss`` skips it.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import baseline
from common import add_common_args, environment, peak_rss_mb, print_table, run_isolated, write_json
from tvscript.data import Corpus, batchify, load_corpus, windows
from tvscript.model import ModelConfig
from tvscript.train import PRESETS, TrainConfig, Trainer

CONTENDERS = ("baseline", "tvscript-default", "examples-tbptt", "tvscript-256")
EXAMPLES = dict(embed_dim=256, hidden_dim=256, num_layers=2, dropout=0.2, batch_size=20, bptt=35, lr=20.0, clip=0.25)


@dataclass
class Contender:
    name: str
    step: Callable[[], int]  # one training step; returns its loss-bearing tokens
    flops_per_token: float
    bf16: bool
    info: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=None)
def corpus(path: str, min_freq: int) -> Corpus:
    return load_corpus(path, min_freq=min_freq)


def lstm_flops(lstm: nn.LSTM) -> float:
    """Forward matmul FLOPs per position of an nn.LSTM (any number of layers)."""
    total, inputs = 0.0, lstm.input_size
    for _ in range(lstm.num_layers):
        total += 2 * 4 * lstm.hidden_size * (inputs + lstm.hidden_size)
        inputs = lstm.hidden_size
    return total


def adaptive_flops(head: nn.AdaptiveLogSoftmaxWithLoss, targets: torch.Tensor) -> float:
    """Expected forward FLOPs per token of the adaptive head, tails weighted by their share of targets."""
    total = 2.0 * head.in_features * head.head.out_features
    bounds = head.cutoffs  # shortlist end, ..., vocabulary size
    for k, tail in enumerate(head.tail):
        share = ((targets >= bounds[k]) & (targets < bounds[k + 1])).float().mean().item()
        total += share * sum(2 * m.in_features * m.out_features for m in tail if isinstance(m, nn.Linear))
    return total


def endless_windows(x: torch.Tensor, y: torch.Tensor, seq_len: int):
    """TBPTT windows, epoch after epoch (the state carries on across the epoch edge, as in Trainer)."""
    while True:
        for _, xb, yb in windows(x, y, seq_len):
            yield xb, yb


def build_baseline(args: argparse.Namespace) -> Contender:
    data = corpus(args.data, 1)
    model = baseline.new_model(len(data.vocab), args.seed)
    optimizer = baseline.new_optimizer(model)
    batches = baseline.endless(baseline.make_loader(data.streams["train"].ids, seed=args.seed))

    def step() -> int:
        x, y = next(batches)
        baseline.train_step(model, optimizer, x, y)
        return y.numel()

    fwd = baseline.WINDOW * (lstm_flops(model.lstm) + 2 * model.fc.in_features * model.fc.out_features)
    return Contender("baseline", step, 3 * fwd, False,
                     {"vocab": len(data.vocab), "model": "256/256/2 full",
                      "batch": f"{baseline.BATCH_SIZE} x {baseline.WINDOW} (1 target)", "optimizer": f"Adam {baseline.LR}"})


def build_tvscript(args: argparse.Namespace, name: str, model_overrides: dict[str, Any]) -> Contender:
    """tvscript's Trainer with the default preset (model options overridden), stepped as Trainer.run steps."""
    model_options, train_options = PRESETS["default"]
    model_options = {**model_options, **model_overrides}
    if args.amp is not None:
        train_options = {**train_options, "amp": args.amp}
    # The run directory is never written: only Trainer.run saves, and it is not called.
    config = TrainConfig(data=args.data, out="unused", preset="default", device="cpu", threads=args.threads,
                         seed=args.seed, **train_options)
    data = corpus(args.data, config.min_freq)
    trainer = Trainer(config, ModelConfig(vocab_size=len(data.vocab), **model_options), data, Path(config.out),
                      log=lambda message: None)
    model, amp = trainer.model, trainer.amp
    batches = endless_windows(trainer.x, trainer.y, config.seq_len)
    model.train()

    def step() -> int:
        xb, yb = next(batches)
        trainer.train_step(xb, yb).item()  # Trainer.run's step, and its one sync per step
        return yb.numel()

    lstm = sum(lstm_flops(layer) for layer in model.layers)
    head = adaptive_flops(model.head, trainer.y) if model.adaptive else 2 * model.head.in_features * model.head.out_features
    c = model.config
    kind = f"adaptive {c.effective_cutoffs()}" if model.adaptive else "full"
    return Contender(name, step, 3 * (lstm + head), amp,
                     {"vocab": len(data.vocab), "model": f"{c.embed_dim}/{c.hidden_dim}/{c.num_layers} {kind}",
                      "batch": f"{config.batch_size} x {config.seq_len}", "optimizer": f"{config.optimizer} {config.lr}",
                      "amp_bf16": amp})


class ExamplesLSTM(nn.Module):
    """pytorch/examples' word_language_model RNNModel (LSTM, untied): dropout, LSTM stack, Linear decoder."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, embed_dim)
        self.rnn = nn.LSTM(embed_dim, hidden_dim, num_layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(hidden_dim, vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)  # (B, T, H)
        return self.decoder(self.drop(out)), hidden  # (B, T, V)


def build_examples(args: argparse.Namespace) -> Contender:
    e = EXAMPLES
    data = corpus(args.data, 1)
    torch.manual_seed(args.seed)
    model = ExamplesLSTM(len(data.vocab), e["embed_dim"], e["hidden_dim"], e["num_layers"], e["dropout"])
    optimizer = torch.optim.SGD(model.parameters(), lr=e["lr"])  # = the example's manual p -= lr * grad
    x, y = batchify(data.streams["train"].ids, e["batch_size"])
    batches = endless_windows(x, y, e["bptt"])
    shape = (e["num_layers"], e["batch_size"], e["hidden_dim"])
    hidden = (torch.zeros(shape), torch.zeros(shape))
    model.train()

    def step() -> int:
        nonlocal hidden
        xb, yb = next(batches)
        logits, hidden = model(xb, tuple(h.detach() for h in hidden))  # the example's repackage_hidden
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), yb.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), e["clip"])
        optimizer.step()
        loss.item()
        return yb.numel()

    fwd = lstm_flops(model.rnn) + 2 * model.decoder.in_features * model.decoder.out_features
    return Contender("examples-tbptt", step, 3 * fwd, False,
                     {"vocab": len(data.vocab), "model": "256/256/2 full", "batch": f"{e['batch_size']} x {e['bptt']}",
                      "optimizer": f"SGD {e['lr']:g}"})


def build(name: str, args: argparse.Namespace) -> Contender:
    torch.set_num_threads(args.threads)
    if name == "baseline":
        return build_baseline(args)
    if name == "examples-tbptt":
        return build_examples(args)
    return build_tvscript(args, name, {} if name == "tvscript-default" else {"hidden_dim": 256})


def time_steps(contender: Contender, steps: int) -> tuple[int, float]:
    tokens, start = 0, time.perf_counter()
    for _ in range(steps):
        tokens += contender.step()
    return tokens, time.perf_counter() - start


def matmul_peak(n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of the fastest of a few m x m matmuls, m in n/4, n/2, n (the best size varies by CPU)."""
    peak = 0.0
    for m in (n // 4, n // 2, n):
        a, b = torch.randn(m, m).to(dtype), torch.randn(m, m).to(dtype)
        torch.matmul(a, b)  # warm-up: thread pool, kernel choice
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
        peak = max(peak, 2 * m**3 / best)
    return peak


def rss_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of one contender alone: build, warm up, a few steps (runs in a spawned process)."""
    contender = build(name, args)
    time_steps(contender, args.warmup + args.rss_steps)
    return peak_rss_mb()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--steps", type=int, default=20, help="timed steps per contender per round (default: 20)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; contenders take turns within each (default: 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="override the default preset's bf16 autocast for the tvscript contenders (default: the preset's)")
    p.add_argument("--matmul-size", type=int, default=2048, help="largest n of the n x n matmuls that measure the peak")
    p.add_argument("--rss-steps", type=int, default=3, help="steps after warm-up in each peak-RSS process")
    p.add_argument("--no-rss", action="store_true", help="skip the per-contender peak-RSS processes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--steps and --rounds must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)

    peaks = {"fp32": matmul_peak(args.matmul_size, torch.float32), "bf16": matmul_peak(args.matmul_size, torch.bfloat16)}
    contenders = [build(name, args) for name in args.contenders]
    for c in contenders:
        time_steps(c, args.warmup)
    tokens = {c.name: 0 for c in contenders}
    seconds = {c.name: 0.0 for c in contenders}
    per_round: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(args.rounds):
        for c in contenders:
            n, s = time_steps(c, args.steps)
            tokens[c.name] += n
            seconds[c.name] += s
            per_round[c.name].append(n / s)
    memory = {} if args.no_rss else {name: run_isolated(rss_child, name, args) for name in args.contenders}

    rows = []
    for c in contenders:
        rate = tokens[c.name] / seconds[c.name]
        peak = peaks["bf16" if c.bf16 else "fp32"]
        rows.append({"contender": c.name, **c.info, "tokens_per_second": rate,
                     "tokens_per_second_per_round": per_round[c.name], "timed_tokens": tokens[c.name],
                     "timed_seconds": seconds[c.name], "gflop_per_token": c.flops_per_token / 1e9,
                     "achieved_gflops": rate * c.flops_per_token / 1e9, "mfu": rate * c.flops_per_token / peak,
                     "mfu_peak": "bf16" if c.bf16 else "fp32", **memory.get(c.name, {})})
    by_name = {r["contender"]: r["tokens_per_second"] for r in rows}
    for row in rows:
        for ref, key in (("baseline", "x_baseline"), ("examples-tbptt", "x_examples")):
            row[key] = row["tokens_per_second"] / by_name[ref] if ref in by_name else None

    env = environment(args.threads)
    print(f"{env['cpu_model']} ({env['cpu_capability']}), torch {env['torch']}, {args.threads} threads; "
          f"matmul peak {peaks['fp32'] / 1e9:,.1f} GFLOP/s fp32, {peaks['bf16'] / 1e9:,.1f} GFLOP/s bf16 "
          f"(best of n={args.matmul_size // 4}, {args.matmul_size // 2}, {args.matmul_size}); {args.rounds} rounds x {args.steps} timed steps")
    print_table(rows, [("contender", "contender"), ("model", "emb/hid/layers head"), ("vocab", "vocab"),
                       ("batch", "batch x seq"), ("optimizer", "optimizer"), ("tokens_per_second", "tokens/s"),
                       ("x_baseline", "x baseline"), ("x_examples", "x examples"), ("gflop_per_token", "GFLOP/token"),
                       ("achieved_gflops", "GFLOP/s"), ("mfu", "MFU"), ("peak_rss_mb", "peak RSS MB")])
    write_json(args.json_out, {"benchmark": "train_speed", "environment": env,
                               "matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
                               "settings": {k: getattr(args, k) for k in
                                            ("steps", "rounds", "warmup", "matmul_size", "seed", "amp", "data")},
                               "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
