"""Training: stateful truncated BPTT over the token stream, evaluation, checkpoints.

``train(config, model_config)`` writes a run directory::

    RUN_DIR/
      model.safetensors, config.json, vocab.json   best weights so far (a checkpoint itself)
      best/  last/                                 checkpoints; last/ adds trainer_state.pt
      metrics.csv  loss.png  summary.json  samples/epoch_N.txt

and ``resume(run_dir)`` continues from ``last/`` exactly: same data position, LSTM
state, optimizer, schedule and RNG, so the next steps match an uninterrupted run.
Under torchrun each rank trains on its own contiguous shard with DistributedDataParallel;
only rank 0 writes files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import CONFIG, VOCAB, WEIGHTS, atomic_write_bytes, atomic_write_text, load_checkpoint, load_trainer_state, read_meta, resolve, save_checkpoint
from .data import Corpus, batchify, load_corpus, num_windows, shard, windows
from .devices import bf16_supported, pick_device
from .errors import TvscriptError
from .evaluate import LossReport, evaluate_loss, speller_for
from .model import LSTMLanguageModel, ModelConfig, detach

METRICS_FIELDS = ["step", "epoch", "split", "loss", "perplexity", "bits_per_char", "bits_per_char_closed", "lr", "tokens_per_second", "elapsed_seconds"]


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str = "runs/seinfeld"
    preset: str = "default"
    epochs: int = 12
    batch_size: int = 32  # TBPTT rows per rank
    seq_len: int = 64
    lr: float = 3e-3
    optimizer: str = "adamw"  # adamw | adam
    weight_decay: float = 0.01
    clip: float = 0.5
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.05
    min_freq: int = 3
    max_vocab: int | None = None
    seed: int = 1234
    eval_every: int = 0  # steps; 0 = once per epoch
    log_every: int = 50
    max_minutes: float | None = None
    device: str = "auto"
    threads: int | None = None
    amp: bool = False  # bf16 autocast
    sample_prime: str = "jerry:"
    sample_tokens: int = 120
    speaker_column: str | None = None
    text_column: str | None = None
    encoding: str = "utf-8-sig"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.seq_len >= 1, "--seq-len must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "--lr must be a positive number"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.clip > 0, "--clip must be > 0"),
            (self.warmup_steps >= 0, "--warmup-steps must be >= 0"),
            (self.min_freq >= 1, "--min-freq must be at least 1"),
            (self.max_vocab is None or self.max_vocab >= 2, "--max-vocab must be at least 2"),
            (self.eval_every >= 0, "--eval-every must be >= 0"),
            (self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be > 0"),
            (self.optimizer in ("adamw", "adam"), "--optimizer must be adamw or adam"),
            (self.schedule in ("cosine", "constant"), "--schedule must be cosine or constant"),
            (self.threads is None or self.threads >= 1, "--threads must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise TvscriptError(message)


# Presets: (model options, training options). "reference" is the course project's recipe
# run in this trainer; "default" is tvscript's own, chosen by the runs in docs/results.md.
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "reference": (
        dict(embed_dim=256, hidden_dim=256, num_layers=2),
        dict(epochs=12, batch_size=128, seq_len=10, lr=0.002, optimizer="adam", weight_decay=0.0,
             clip=5.0, warmup_steps=0, schedule="constant", min_freq=1),
    ),
    "default": (
        dict(embed_dim=256, hidden_dim=512, num_layers=2, dropout=0.3, input_dropout=0.2,
             embed_dropout=0.05, adaptive_cutoffs=(2000, 8000)),
        dict(epochs=16, batch_size=32, seq_len=64, lr=3e-3, optimizer="adamw", weight_decay=0.01,
             clip=0.5, warmup_steps=100, schedule="cosine", min_freq=1, amp=False),
    ),
}


def preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if name not in PRESETS:
        raise TvscriptError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Set up the process group under torchrun (nccl on GPUs, gloo on CPU) and pick the device."""
    info = dist_info()
    device = pick_device(device_name)
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":  # bound to this rank's GPU, so barriers and object collectives use it
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return info, device


def lr_lambda(config: TrainConfig, total_steps: int):
    """Linear warmup, then cosine decay to min_lr_ratio (or constant)."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Progress:
    """Everything that must survive a restart besides weights and optimizer."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # next TBPTT window within the epoch
    tokens: int = 0  # loss-bearing tokens trained on (all ranks)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    best_valid_loss: float = math.inf
    best: dict[str, float] = field(default_factory=dict)


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop after the current step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""

    @contextmanager
    def installed(self) -> Iterator["StopFlag"]:
        previous = {}

        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested, self.reason = True, signal.Signals(signum).name

        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling
            pass
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class Trainer:
    """One training run; ``run()`` trains to the end, the time budget or a stop request."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig, corpus: Corpus,
                 run_dir: Path, resume_state: dict[str, Any] | None = None, log=print):
        self.config, self.run_dir, self.corpus, self.log = config, run_dir, corpus, log
        self.speller = speller_for(corpus.vocab)
        self.owns_process_group = dist_info().world_size > 1 and not dist.is_initialized()  # close() ends it
        self.dist, self.device = init_distributed(config.device)
        if not self.dist.main:
            self.log = lambda message: None  # one voice under torchrun: rank 0's
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed + self.dist.rank)
        self.model = LSTMLanguageModel(model_config).to(self.device)
        train_ids = shard(corpus.streams["train"].ids, self.dist.rank, self.dist.world_size)
        self.x, self.y = batchify(train_ids, config.batch_size)  # (B, L) per rank
        if self.device.type == "cuda":  # the whole shard lives on the GPU: no host copy per step
            self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        self.steps_per_epoch = num_windows(self.x.size(1), config.seq_len)
        self.total_steps = self.steps_per_epoch * config.epochs
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        # The fused kernel updates each parameter in one pass instead of ~10 foreach passes
        # (benchmarks/train_speed.py: ~15% more tokens/s at the reference size on a CPU).
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = opt(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config, self.total_steps))
        self.progress = Progress()
        self.state = self.model.init_state(config.batch_size, self.device)
        # The adaptive head only runs the tail clusters whose words occur in the batch, so a step
        # can leave parameters without gradients: DDP must look for them (full softmax: all used).
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                            find_unused_parameters=self.model.adaptive)
                    if self.dist.world_size > 1 else None)
        if resume_state is not None:
            self._restore(resume_state)
        self.meta = {
            "name": run_dir.name,
            "train": asdict(config),
            "data": {"path": str(config.data), "sha256": sha256_file(config.data),
                     **{f"{k}_tokens": s.num_targets for k, s in corpus.streams.items()},
                     **{f"{k}_chars": s.chars for k, s in corpus.streams.items()}},
            "world_size": self.dist.world_size,
        }

    # -- state -------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        p = self.progress
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": {"step": p.step, "epoch": p.epoch, "window": p.window, "tokens": p.tokens,
                         "train_seconds": p.train_seconds, "wall_seconds": p.wall_seconds,
                         "best_valid_loss": p.best_valid_loss, "best": dict(p.best)},
            "lstm_state": [[h.cpu(), c.cpu()] for h, c in self.state],
            "torch_rng": torch.get_rng_state(),
            "world_size": self.dist.world_size,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(self, saved: dict[str, Any]) -> None:
        if saved.get("world_size", 1) != self.dist.world_size:
            raise TvscriptError(f"this run was trained with {saved.get('world_size')} processes; resume it with the same number")
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.progress = Progress(**saved["progress"])
            mine = saved["ranks"][self.dist.rank] if "ranks" in saved else saved  # under DDP: this rank's rows and RNG
            self.state = tuple((h.to(self.device), c.to(self.device)) for h, c in mine["lstm_state"])
            torch.set_rng_state(mine["torch_rng"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
            raise TvscriptError(f"{self.run_dir / 'last'}: trainer_state.pt does not fit this run "
                                f"({err.__class__.__name__}); it is damaged or from another run") from None
        if "cuda_rng" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)

    def _gather_rank_states(self) -> list[dict[str, Any]] | None:
        """Under DDP, every rank's LSTM state and RNG, gathered on rank 0 (a collective); None on one process."""
        if self.dist.world_size == 1:
            return None
        mine = {"lstm_state": [[h.cpu(), c.cpu()] for h, c in self.state], "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        ranks = [None] * self.dist.world_size if self.dist.main else None
        dist.gather_object(mine, ranks, dst=0)
        return ranks

    # -- files (rank 0 only) -------------------------------------------------------------
    def save(self, best: bool = False) -> None:
        ranks = self._gather_rank_states()  # every rank calls save(); only rank 0 writes
        if not self.dist.main:
            return
        meta = {**self.meta, "metrics": dict(self.progress.best)}
        state = self.trainer_state() if ranks is None else {**self.trainer_state(), "ranks": ranks}
        save_checkpoint(self.run_dir / "last", self.model, self.corpus.vocab, meta, state)
        if best:
            save_checkpoint(self.run_dir / "best", self.model, self.corpus.vocab, meta)
            for name in (WEIGHTS, CONFIG, VOCAB):  # the run directory itself loads as the best model
                atomic_write_bytes(self.run_dir / name, (self.run_dir / "best" / name).read_bytes())
        self.write_summary()

    def write_summary(self) -> None:
        p = self.progress
        summary = {
            "tokens_per_second": p.tokens / p.train_seconds if p.train_seconds else 0.0,
            "wall_seconds": p.wall_seconds,
            "train_seconds": p.train_seconds,
            "epochs": p.epoch + p.window / self.steps_per_epoch,
            "steps": p.step,
            "tokens": p.tokens,
            "world_size": self.dist.world_size,
            "best_valid_loss": p.best.get("loss"),
            "best_valid_perplexity": p.best.get("perplexity"),
            "best_valid_bits_per_char": p.best.get("bits_per_char"),
            "best_step": p.best.get("step"),
        }
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))

    def log_metrics(self, row: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, METRICS_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in METRICS_FIELDS})

    def write_sample(self) -> None:
        if not self.dist.main:
            return
        from .api import ScriptModel

        self.model.eval()
        scripter = ScriptModel(self.model, self.corpus.vocab, self.meta, self.run_dir)
        try:
            text = scripter.generate(self.config.sample_prime, max_new_tokens=self.config.sample_tokens, seed=0)
        except TvscriptError as err:
            text = f"(no sample: {err})\n"
        self.model.train()
        atomic_write_text(self.run_dir / "samples" / f"epoch_{self.progress.epoch}.txt", text)

    # -- loop --------------------------------------------------------------------------
    def evaluate(self) -> LossReport:
        report = evaluate_loss(self.model, self.corpus.streams["valid"], unk_id=self.corpus.vocab.unk_id,
                               speller=self.speller, rank=self.dist.rank, world_size=self.dist.world_size)
        p = self.progress
        self.log_metrics({"step": p.step, "epoch": p.epoch, "split": "valid", "loss": f"{report.loss:.5f}",
                          "perplexity": f"{report.perplexity:.3f}", "bits_per_char": f"{report.bits_per_char:.5f}",
                          "bits_per_char_closed": f"{report.bits_per_char_closed:.5f}", "elapsed_seconds": f"{p.wall_seconds:.1f}"})
        return report

    def checkpoint(self) -> None:
        """Evaluate, save last (and best if improved), redraw the plot."""
        report = self.evaluate()
        p = self.progress
        improved = report.loss < p.best_valid_loss
        if improved:
            p.best_valid_loss = report.loss
            p.best = {"step": p.step, "loss": report.loss, "perplexity": report.perplexity,
                      "bits_per_char": report.bits_per_char, "bits_per_char_closed": report.bits_per_char_closed,
                      "oov_rate": report.oov_rate}
        self.save(best=improved)
        if self.dist.main:
            from .plot import plot_metrics

            plot_metrics(self.run_dir / "metrics.csv", self.run_dir / "loss.png")
        self.log(f"step {p.step} epoch {p.epoch} valid loss {report.loss:.4f} ppl {report.perplexity:.2f} "
                 f"bits/char {report.bits_per_char:.4f}{' (best)' if improved else ''}")

    def _step_report(self, loss: torch.Tensor, requested: bool, start: float, base: float) -> tuple[float, bool, bool]:
        """The step's loss (mean over all ranks), whether any rank was asked to stop, and whether the
        time budget is spent: under DDP one all-reduce, so every rank logs, checks and stops alike."""
        spent = self.config.max_minutes is not None and base + time.perf_counter() - start >= self.config.max_minutes * 60
        if self.dist.world_size == 1:
            return loss.item(), requested, spent
        packed = torch.tensor([loss.item(), requested, spent], dtype=torch.float64, device=self.device)
        dist.all_reduce(packed)  # each rank's loss is a mean over the same number of tokens
        loss_sum, requests, spent_anywhere = packed.tolist()
        return loss_sum / self.dist.world_size, requests > 0, spent_anywhere > 0

    def close(self) -> None:
        """Tear down the process group this trainer set up under torchrun (no-op otherwise)."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def amp(self) -> bool:
        """bf16 autocast: asked for, and the device has bf16."""
        return self.config.amp and bf16_supported(self.device)

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a TBPTT window from the carried state; returns the loss (still a tensor).

        Forward (bf16 autocast when ``amp``), zero_grad, backward, clip, optimizer and
        scheduler step, then the new state is carried on without its graph. The model must
        be in training mode. ``run`` and the benchmarks step through here.
        """
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext():
            _, loss, state = (self.ddp or self.model)(xb, self.state, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.state = detach(state)
        return loss

    def run(self, show_progress: bool = True) -> Path:
        from tqdm import tqdm

        c, p = self.config, self.progress
        (self.ddp or self.model).train()
        if c.amp and not self.amp:
            self.log(f"--amp: no bf16 support on this {self.device.type}; training in fp32")
        start, base_wall = time.perf_counter(), p.wall_seconds
        bar = tqdm(total=self.total_steps, initial=p.step, disable=not (show_progress and self.dist.main),
                   unit="step", dynamic_ncols=True, leave=False)
        stopped, window_loss, window_tokens, last_log = "", 0.0, 0, time.perf_counter()
        with StopFlag().installed() as stop:
            while p.epoch < c.epochs and not stopped:
                for k, xb, yb in windows(self.x, self.y, c.seq_len, start=p.window):
                    t0 = time.perf_counter()
                    xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
                    loss = self.train_step(xb, yb)
                    loss_value, requested, spent = self._step_report(loss, stop.requested, start, base_wall)
                    if not math.isfinite(loss_value):
                        raise TvscriptError(f"loss became {loss_value} at step {p.step + 1}; the last good checkpoint "
                                            f"is in {self.run_dir / 'last'}; try a lower --lr or --clip")
                    n_tokens = yb.numel() * self.dist.world_size
                    p.step, p.window, p.tokens = p.step + 1, k + 1, p.tokens + n_tokens
                    p.train_seconds += time.perf_counter() - t0
                    p.wall_seconds = base_wall + time.perf_counter() - start
                    window_loss += loss_value * n_tokens
                    window_tokens += n_tokens
                    bar.update(1)
                    if p.step % c.log_every == 0 or k + 1 == self.steps_per_epoch:
                        now = time.perf_counter()
                        mean = window_loss / window_tokens
                        rate = window_tokens / (now - last_log)
                        bar.set_postfix(loss=f"{mean:.3f}", ppl=f"{math.exp(min(mean, 50)):.1f}", tok_s=f"{rate:,.0f}")
                        self.log_metrics({"step": p.step, "epoch": p.epoch, "split": "train", "loss": f"{mean:.5f}",
                                          "perplexity": f"{math.exp(min(mean, 50)):.3f}",
                                          "lr": f"{self.scheduler.get_last_lr()[0]:.6g}",
                                          "tokens_per_second": f"{rate:.1f}", "elapsed_seconds": f"{p.wall_seconds:.1f}"})
                        window_loss, window_tokens, last_log = 0.0, 0, now
                    if c.eval_every and p.step % c.eval_every == 0 and k + 1 < self.steps_per_epoch:
                        self.checkpoint()
                    if requested:
                        stopped = f"stopped by {stop.reason or 'a signal to another rank'}"
                        break
                    if spent:
                        stopped = f"time budget of {c.max_minutes} minutes reached"
                        break
                else:
                    p.epoch, p.window = p.epoch + 1, 0
                    self.checkpoint()
                    self.write_sample()
                    continue
                break
        bar.close()
        p.wall_seconds = base_wall + time.perf_counter() - start
        if stopped:
            if stopped.startswith("time"):
                self.checkpoint()
            else:
                self.save()
            self.log(f"{stopped}; saved {self.run_dir / 'last'} (resume with --resume {self.run_dir})")
        if self.dist.main:
            self.write_summary()
        if self.dist.world_size > 1:
            dist.barrier()  # every rank leaves together, after rank 0 has written
        return self.run_dir


def train(config: TrainConfig, model_config: dict[str, Any], log=print, show_progress: bool = True) -> Path:
    """Start a new run in config.out."""
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise TvscriptError(f"--out {run_dir}: is a file, not a folder; choose another --out")
    # last.old: a kill during a checkpoint swap left the only complete checkpoint there
    if any((run_dir / name).exists() for name in ("last", "last.old", "best", CONFIG, WEIGHTS, "summary.json")):
        raise TvscriptError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    corpus = load_corpus(config.data, min_freq=config.min_freq, max_vocab=config.max_vocab,
                         speaker_column=config.speaker_column, text_column=config.text_column, encoding=config.encoding)
    if corpus.streams["valid"].num_targets == 0:
        n = sum(len(t) for t in corpus.turns.values())
        raise TvscriptError(f"{config.data}: only {n} turns, too few to hold out a validation split (5%); "
                            f"use a corpus of at least 20 turns")
    world_size = dist_info().world_size
    per_rank = len(shard(corpus.streams["train"].ids, 0, world_size)) - 1
    if per_rank < config.batch_size:
        raise TvscriptError(f"{config.data}: the training split has {per_rank:,} tokens{' per process' if world_size > 1 else ''}, "
                            f"too few for --batch-size {config.batch_size}; use a --batch-size of at most {max(1, per_rank)} "
                            f"or a bigger corpus")
    pick_device(config.device)  # an unusable --device is reported before the run directory is made
    try:
        mc = ModelConfig(vocab_size=len(corpus.vocab), **model_config)
    except TypeError as err:
        raise TvscriptError(str(err)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, mc, corpus, run_dir, log=log)
    world = f" x {trainer.dist.world_size} processes" if trainer.dist.world_size > 1 else ""
    trainer.log(f"training {sum(p.numel() for p in trainer.model.parameters()):,} parameters on {trainer.device}{world}, "
                f"vocabulary {len(corpus.vocab):,}, {corpus.streams['train'].num_targets:,} training tokens, "
                f"{trainer.steps_per_epoch} steps per epoch")
    try:
        return trainer.run(show_progress)
    finally:
        trainer.close()


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, log=print, show_progress: bool = True) -> Path:
    """Continue a run from RUN_DIR/last exactly where it stopped."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "no such folder"
        raise TvscriptError(f"--resume {run_dir}: {what}; pass the --out folder of an interrupted 'tvscript train'")
    last = resolve(run_dir / "last")
    if not (last / CONFIG).exists():
        raise TvscriptError(f"--resume {run_dir}: no last/ checkpoint to continue from; pass the --out folder of "
                            f"a 'tvscript train' run (not a checkpoint inside it), or start a new run")
    meta = read_meta(last)
    try:
        config = replace(TrainConfig(**meta["train"]), **(overrides or {}))
        expected_sha256 = meta["data"]["sha256"]
    except (KeyError, TypeError) as err:
        raise TvscriptError(f"{last / CONFIG}: no usable training settings ({err.__class__.__name__}: {err}); "
                            f"this checkpoint cannot be resumed") from None
    ckpt = load_checkpoint(last)
    state = load_trainer_state(last)
    corpus = load_corpus(config.data, vocab=ckpt.vocab, speaker_column=config.speaker_column,
                         text_column=config.text_column, encoding=config.encoding)
    if sha256_file(config.data) != expected_sha256:
        raise TvscriptError(f"{config.data} has changed since the run started; resume needs the same corpus")
    trainer = Trainer(config, ckpt.model.config, corpus, run_dir, resume_state=state, log=log)
    trainer.model.load_state_dict(ckpt.model.state_dict())
    if trainer.dist.main:
        _truncate_metrics(run_dir / "metrics.csv", trainer.progress.step)
    trainer.log(f"resuming {run_dir} at step {trainer.progress.step} (epoch {trainer.progress.epoch})")
    try:
        return trainer.run(show_progress)
    finally:
        trainer.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint, so the resumed run does not repeat them."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= step]
    out = io.StringIO()
    writer = csv.DictWriter(out, METRICS_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())

