#!/usr/bin/env bash
# A short check of tvscript's GPU path on a CUDA machine (about MINUTES + 1 minutes):
#   - which torch / CUDA / cuDNN, whether bf16 is supported, and whether nn.LSTM really runs on cuDNN;
#   - trains the default preset on the Seinfeld corpus for MINUTES minutes (bf16 autocast unless AMP=0),
#     on 1 GPU, or on NPROC GPUs through torchrun (DDP over nccl);
#   - prints tokens/s, steps, the last train loss and the best valid loss, and loads the
#     checkpoint back on the CPU.
#
# Usage (from anywhere):  benchmarks/gpu_check.sh
# Environment:  PYTHON=python   (or VENV=1 to make ./.venv-gpu and pip install -e . into it)
#               DATA=path/to/Seinfeld_Scripts.txt   MINUTES=2   NPROC=1   AMP=1
#               DEVICE=cuda (DEVICE=cpu EXTRA_ARGS="..." only to smoke-test this script without a GPU)
# Status: written without a GPU; it has not yet been run on one in this project (see docs/distributed.md).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MINUTES="${MINUTES:-2}"
NPROC="${NPROC:-1}"
AMP="${AMP:-1}"
DEVICE="${DEVICE:-cuda}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

PY="${PYTHON:-python}"
if [[ "${VENV:-0}" == 1 ]]; then
    [[ -x .venv-gpu/bin/python ]] || python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q -e .
    PY=.venv-gpu/bin/python
fi

DATA="${DATA:-}"
if [[ -z "$DATA" ]]; then
    for candidate in shared/data/Seinfeld_Scripts.txt ../shared/data/Seinfeld_Scripts.txt data/Seinfeld_Scripts.txt; do
        if [[ -f "$candidate" ]]; then DATA="$candidate"; break; fi
    done
fi
if [[ -z "$DATA" || ! -f "$DATA" ]]; then
    echo "gpu_check: no corpus found; set DATA=... or run '$PY -m tvscript download'" >&2
    exit 1
fi

echo "== environment"
"$PY" - "$DEVICE" <<'EOF'
import sys
import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}, "
      f"GPUs {torch.cuda.device_count()}")
print(f"cudnn available {torch.backends.cudnn.is_available()}, enabled {torch.backends.cudnn.enabled}, "
      f"version {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available to this python; nothing to check")
    print(f"device {torch.cuda.get_device_name(0)}, bf16 supported {torch.cuda.is_bf16_supported()}")
    # Does nn.LSTM take the cuDNN kernel? Look for the op in a profile of one forward/backward.
    lstm = torch.nn.LSTM(64, 128, batch_first=True).cuda()
    x = torch.randn(8, 16, 64, device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
                lstm(x)[0].sum().backward()
    ops = {e.key for e in prof.key_averages()}
    print(f"nn.LSTM on cuda uses cuDNN: {any('cudnn_rnn' in op for op in ops)}")
EOF

OUT="$(mktemp -d "${TMPDIR:-/tmp}/tvscript-gpu-check.XXXXXX")/run"
ARGS=(train --data "$DATA" --out "$OUT" --device "$DEVICE" --max-minutes "$MINUTES" --quiet)
if [[ "$AMP" == 1 ]]; then ARGS+=(--amp); fi
# shellcheck disable=SC2206
ARGS+=($EXTRA_ARGS)

echo "== training ${MINUTES} min on $NPROC process(es), amp=$AMP: $OUT"
START=$(date +%s)
if [[ "$NPROC" -gt 1 ]]; then
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m tvscript "${ARGS[@]}"
else
    "$PY" -m tvscript "${ARGS[@]}"
fi
echo "wall time $(( $(date +%s) - START )) s (including corpus loading, evaluation and checkpoints)"

echo "== results"
"$PY" - "$OUT" <<'EOF'
import csv
import json
import sys
from pathlib import Path

import torch

from tvscript.checkpoint import load_checkpoint

run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
with open(run / "metrics.csv", newline="") as f:
    train = [r for r in csv.DictReader(f) if r["split"] == "train"]
print(f"tokens/s {summary['tokens_per_second']:,.0f} (all ranks), steps {summary['steps']}, "
      f"epochs {summary['epochs']:.2f}, world size {summary['world_size']}")
if train:
    print(f"train loss {float(train[0]['loss']):.3f} at step {train[0]['step']} -> "
          f"{float(train[-1]['loss']):.3f} at step {train[-1]['step']}")
print(f"best valid loss {summary['best_valid_loss']:.4f}, perplexity {summary['best_valid_perplexity']:.2f}, "
      f"bits/char {summary['best_valid_bits_per_char']:.4f} (step {summary['best_step']})")
ckpt = load_checkpoint(run, device="cpu")  # saved from CPU copies: loads without a GPU
logits, _, _ = ckpt.model(torch.tensor([[ckpt.vocab.unk_id]]))
print(f"checkpoint loads on cpu: {bool(torch.isfinite(logits).all())} "
      f"({sum(p.numel() for p in ckpt.model.parameters()):,} parameters)")
EOF
