"""Command line: parse arguments, build configs, call the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import TvscriptError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: Callable[[str], Any], low: float | None = None, high: float | None = None,
            low_open: bool = False, name: str = "value") -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    return parse


positive_int = _number(int, 1)
nonneg_int = _number(int, 0)
positive_float = _number(float, 0, low_open=True)
probability = _number(float, 0, 1, low_open=True)
dropout = _number(float, 0, 0.99)


def _cast(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give speaker names separated by commas, e.g. jerry,george")
    return names


def _cutoffs(text: str) -> tuple[int, ...]:
    if text.lower() in ("", "none", "full"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give increasing integers like 2000,8000, or 'full'") from None


def build_parser() -> Parser:
    from .train import PRESETS

    parser = Parser(prog="tvscript", description="Train an LSTM on TV transcripts and generate new scripts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("download", help="fetch the Seinfeld corpus and verify its checksum")
    p.add_argument("--dest", default="data", help="folder to save into (default: data)")

    p = sub.add_parser("train", help="train a model on a transcript corpus")
    p.add_argument("--data", help="corpus file: .txt ('NAME: line' turns) or .csv")
    p.add_argument("--out", default="runs/seinfeld", help="run directory to create (default: runs/seinfeld)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="hyperparameter preset (default: default)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--max-minutes", type=positive_float, help="stop cleanly after this much wall time")
    p.add_argument("--batch-size", type=positive_int, help="TBPTT rows (per process)")
    p.add_argument("--seq-len", type=positive_int, help="TBPTT window length")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--weight-decay", type=_number(float, 0))
    p.add_argument("--clip", type=positive_float, help="gradient-norm clip")
    p.add_argument("--warmup-steps", type=nonneg_int)
    p.add_argument("--schedule", choices=["cosine", "constant"])
    p.add_argument("--optimizer", choices=["adamw", "adam"])
    p.add_argument("--embed-dim", type=positive_int)
    p.add_argument("--hidden-dim", type=positive_int)
    p.add_argument("--num-layers", type=positive_int)
    p.add_argument("--dropout", type=dropout, help="locked dropout between layers and on the output")
    p.add_argument("--input-dropout", type=dropout, help="locked dropout on the embeddings")
    p.add_argument("--embed-dropout", type=dropout, help="drop whole word types")
    p.add_argument("--weight-drop", type=dropout, help="DropConnect on the LSTM's hidden-to-hidden weights")
    p.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--adaptive-cutoffs", type=_cutoffs, help="adaptive softmax cutoffs, e.g. 2000,8000; 'full' for a full softmax")
    p.add_argument("--min-freq", type=positive_int, help="words seen fewer times in train become <unk>")
    p.add_argument("--max-vocab", type=_number(int, 2))
    p.add_argument("--seed", type=nonneg_int)
    p.add_argument("--eval-every", type=nonneg_int, help="also evaluate and checkpoint every N steps")
    p.add_argument("--log-every", type=positive_int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast")
    p.add_argument("--speaker-column", help="CSV column with the speaker (default: Character)")
    p.add_argument("--text-column", help="CSV column with the line (default: Dialogue)")
    p.add_argument("--encoding", help="text encoding of the corpus (default: utf-8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per evaluation only)")

    p = sub.add_parser("generate", help="write a script with a trained model")
    _model_arg(p, generates=True)
    p.add_argument("--prime", default="jerry:", help="a character name or any opening text (default: jerry:)")
    _generation_args(p)
    p.add_argument("--output", help="write the script to this file instead of stdout")
    p.add_argument("--format", choices=["text", "markdown", "json", "fountain"], default="text")

    p = sub.add_parser("export", help="write a compact copy of a model for sharing (no trainer state)")
    _model_arg(p)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16")
    p.add_argument("--int8-embedding", action="store_true", help="store the embedding as int8 with a scale per row")

    p = sub.add_parser("evaluate", help="held-out loss, perplexity and bits per character")
    _model_arg(p, generates=True)
    p.add_argument("--data", required=True, help="the corpus the model was trained on")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    p.add_argument("--samples", type=nonneg_int, default=0, help="also generate N scenes and report script-form metrics")
    _adapt_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--speaker-column")
    p.add_argument("--text-column")
    p.add_argument("--encoding", default="utf-8-sig")

    p = sub.add_parser("serve", help="web page and HTTP API (JSON and server-sent events) for a model")
    _model_arg(p, generates=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=_number(int, 0, 65535), default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--max-concurrency", type=positive_int, default=2, help="generations running at once (default: 2)")
    p.add_argument("--timeout", type=positive_float, default=30.0, help="seconds one generation may run (default: 30)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default: 1; requests run in parallel)")
    return parser


def _model_arg(p: argparse.ArgumentParser, generates: bool = False) -> None:
    p.add_argument("--model", help="run directory or checkpoint directory (default: the shipped Seinfeld model)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    if generates:
        p.add_argument("--fp32", action="store_true",
                       help="generate through the fp32 weights (default on CPUs that can: int8 copies, several times faster)")


def _generation_args(p: argparse.ArgumentParser) -> None:
    from .generate import MAX_NEW_TOKENS, MAX_RETURN_SEQUENCES, MAX_SELF_REPLY_PENALTY, MAX_TEMPERATURE, GenerationConfig

    d = GenerationConfig()
    p.add_argument("--max-new-tokens", type=_number(int, 1, MAX_NEW_TOKENS), default=d.max_new_tokens)
    p.add_argument("--max-lines", type=positive_int, help="stop after this many lines")
    p.add_argument("--temperature", type=_number(float, 0, MAX_TEMPERATURE), default=d.temperature)
    p.add_argument("--top-k", type=positive_int, default=d.top_k)
    p.add_argument("--top-p", type=probability, default=d.top_p)
    p.add_argument("--repetition-penalty", type=positive_float, default=d.repetition_penalty)
    p.add_argument("--num-return-sequences", type=_number(int, 1, MAX_RETURN_SEQUENCES), default=1)
    p.add_argument("--seed", type=nonneg_int, help="same seed, same script")
    p.add_argument("--cast", type=_cast, help="only these speakers, e.g. jerry,george,elaine,kramer")
    p.add_argument("--self-reply-penalty", type=_number(float, 0, MAX_SELF_REPLY_PENALTY), default=d.self_reply_penalty,
                   help=f"make a speaker answering themselves less likely by this logit cut (default {d.self_reply_penalty:g}; 0: "
                        "as the model likes)")
    p.add_argument("--no-self-reply", action="store_true", help="a speaker never answers themselves")
    p.add_argument("--unstructured", action="store_true", help="sample freely, without the script-form rules")


def _adapt_args(p: argparse.ArgumentParser) -> None:
    from .adapt import AdaptConfig

    d = AdaptConfig()
    p.add_argument("--adapt", action="store_true",
                   help="also report adaptive (dynamic) evaluation: the model learns from each window after scoring it")
    p.add_argument("--adapt-lr", type=_number(float, 0), default=d.lr, help=f"SGD step size (default: {d.lr:g})")
    p.add_argument("--adapt-window", type=_number(int, 1, 100_000), default=d.window,
                   help=f"tokens scored between two steps (default: {d.window})")
    p.add_argument("--unk-cache", type=_number(float, 0, 0.99), default=d.unk_cache,
                   help=f"weight of recently seen unknown words when pricing an <unk> (default: {d.unk_cache:g})")
    p.add_argument("--unk-cache-size", type=_number(int, 1, 1_000_000), default=d.unk_cache_size,
                   help=f"how many recent unknown words the cache holds (default: {d.unk_cache_size})")


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(max_new_tokens=args.max_new_tokens, max_lines=args.max_lines, temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                num_return_sequences=args.num_return_sequences, seed=args.seed, cast=args.cast,
                no_self_reply=args.no_self_reply, self_reply_penalty=args.self_reply_penalty, structured=not args.unstructured)


# -- commands -----------------------------------------------------------------------------

def cmd_download(args: argparse.Namespace) -> None:
    from .download import download

    print(download(args.dest))


TRAIN_FLAGS = ("epochs", "max_minutes", "batch_size", "seq_len", "lr", "weight_decay", "clip", "warmup_steps",
               "schedule", "optimizer", "min_freq", "max_vocab", "seed", "eval_every", "log_every", "device",
               "threads", "amp", "speaker_column", "text_column", "encoding")
MODEL_FLAGS = ("embed_dim", "hidden_dim", "num_layers", "dropout", "input_dropout", "embed_dropout", "weight_drop",
               "tie_weights", "adaptive_cutoffs")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, dist_info, preset, resume, train

    given = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.resume:
        allowed = {"epochs", "max_minutes", "device", "threads", "log_every"}
        extra = sorted(set(given) - allowed) + [k for k in MODEL_FLAGS if getattr(args, k) is not None]
        if extra or args.data:
            raise TvscriptError(f"--resume continues with the run's own settings; only --epochs, --max-minutes, "
                                f"--device and --threads may change (got {', '.join(extra) or '--data'})")
        run = resume(args.resume, given, log=log, show_progress=not args.quiet)
    else:
        if not args.data:
            raise TvscriptError("--data is required: a transcript file (get Seinfeld with 'tvscript download')")
        model_options, train_options = preset(args.preset)
        model_options = {**model_options, **{k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}}
        config = TrainConfig(data=args.data, out=args.out, preset=args.preset, **{**train_options, **given})
        run = train(config, model_options, log=log, show_progress=not args.quiet)
    if dist_info().main:  # under torchrun every rank returns here
        print(run)


def cmd_generate(args: argparse.Namespace) -> None:
    from .api import load
    from .checkpoint import atomic_write_text
    from .formats import render

    output = Path(args.output) if args.output else None
    if output is not None:  # checked before any work, so a typo costs nothing
        if output.is_dir():
            raise TvscriptError(f"--output {output}: is a directory; give a file name such as {output / 'scene.txt'}")
        if not output.parent.is_dir():
            raise TvscriptError(f"--output {output}: folder {output.parent} does not exist; create it or choose another path")
    model = load(args.model, device=args.device, int8=not args.fp32)
    options = generation_options(args)
    if output is None and args.format == "text" and args.num_return_sequences == 1:
        for piece in model.stream(args.prime, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        return
    if args.format == "text" and args.num_return_sequences == 1:
        text = "".join(model.stream(args.prime, **options))
    else:
        text = render(model.generate_batch(args.prime, **options).texts, args.format)
    if output is None:
        sys.stdout.write(text)
    else:  # whole file or nothing: a failed or interrupted run never truncates an existing file
        atomic_write_text(output, text)


def cmd_export(args: argparse.Namespace) -> None:
    import torch

    from .api import default_model_path
    from .checkpoint import export_checkpoint

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    print(export_checkpoint(Path(args.model or default_model_path()), Path(args.out), dtype, args.int8_embedding))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .api import load
    from .data import load_corpus
    from .evaluate import evaluate_loss, speller_for

    model = load(args.model, device=args.device, int8=not args.fp32)
    corpus = load_corpus(args.data, vocab=model.vocab, speaker_column=args.speaker_column,
                         text_column=args.text_column, encoding=args.encoding)
    stream, speller = corpus.streams[args.split], speller_for(model.vocab)
    report = evaluate_loss(model.model, stream, unk_id=model.vocab.unk_id, speller=speller)
    figures = ("loss", "perplexity", "bits_per_char", "perplexity_open", "bits_per_char_closed")
    result = {"split": args.split, "tokens": report.tokens, "oov_rate": report.oov_rate,
              **{key: getattr(report, key) for key in figures}}
    if args.adapt:
        from .adapt import AdaptConfig, adaptive_loss

        config = AdaptConfig(lr=args.adapt_lr, window=args.adapt_window, unk_cache=args.unk_cache,
                             unk_cache_size=args.unk_cache_size)
        adapted = adaptive_loss(model.model, stream, config, unk_id=model.vocab.unk_id, speller=speller)
        result.update({f"adapt_{key}": value for key, value in config.to_dict().items()})
        result.update({f"adapt_{key}": getattr(adapted, key) for key in figures})
    if args.samples:
        from .script_metrics import compare_samples

        result.update(compare_samples(model, corpus, args.split, args.samples))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")


def cmd_serve(args: argparse.Namespace) -> None:
    from .api import load
    from .serve import Limits, serve

    model = load(args.model, device=args.device, int8=not args.fp32)  # once, shared read-only by all requests
    serve(model, host=args.host, port=args.port,
          limits=Limits(max_concurrency=args.max_concurrency, request_timeout_s=args.timeout), threads=args.threads)


COMMANDS = {"download": cmd_download, "train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate,
            "export": cmd_export, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad argument already reported in one line
        return int(exit_.code or 0)
    try:
        COMMANDS[args.command](args)
    except TvscriptError as err:
        print(f"tvscript: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tvscript: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:
        print(f"tvscript: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
