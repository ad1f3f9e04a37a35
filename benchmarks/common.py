"""Shared helpers of the benchmark scripts: machine facts, peak memory, isolation, tables, JSON.

Peak RSS is read from ``VmHWM`` in /proc/self/status (the high-water mark of this process
image), not from ``resource.getrusage(...).ru_maxrss``: Linux carries ru_maxrss across
fork+exec, so a child started with multiprocessing 'spawn' reports its parent's peak when
that is larger (checked on this machine: a 14 MB child read 423 MB after a 400 MB parent).
ru_maxrss is still recorded next to it, and used where /proc is missing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import sys
from pathlib import Path
from typing import Any, Callable

import torch

DEFAULT_DATA = "data/Seinfeld_Scripts.txt"  # where 'tvscript download' puts the corpus


def add_common_args(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--json-out", help="also write the results here as JSON")
    if data:
        parser.add_argument("--data", default=DEFAULT_DATA, help=f"the corpus (default: {DEFAULT_DATA})")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int) -> dict[str, Any]:
    """What the numbers depend on besides the code."""
    return {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "logical_cpus": multiprocessing.cpu_count(), "torch": torch.__version__, "threads": threads,
            "python": platform.python_version()}


def peak_rss_mb() -> dict[str, float | None]:
    """This process's peak resident memory in MiB: VmHWM (see the module docstring) and ru_maxrss."""
    hwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_rss_mb": hwm if hwm is not None else maxrss, "ru_maxrss_mb": maxrss}


def run_isolated(fn: Callable[..., dict], *args: Any) -> dict:
    """fn(*args) in a fresh 'spawn' process, so its memory peak is its own; fn must be importable."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """A Markdown table of rows; columns are (key, header)."""
    print("| " + " | ".join(header for _, header in columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(row.get(key)) for key, _ in columns) + " |")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
