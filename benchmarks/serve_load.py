"""Load test for ``tvscript serve``: N concurrent clients for a bounded time, on loopback.

Starts ``python -m tvscript serve --model RUN_DIR --port P`` as a subprocess bound to
127.0.0.1, waits for ``/health``, then runs ``--clients`` threads that each POST to
``/api/generate`` (or ``/api/stream``) in a loop until ``--seconds`` have passed. Prints
requests/s, p50/p95 latency, the error count and the server's RSS (VmRSS from
/proc/PID/status) before and after; ``--json-out`` writes the same as JSON.

    python benchmarks/serve_load.py --model runs/seinfeld --clients 10 --seconds 20

Every loop is bounded by the deadline; the server is always stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only, by design


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """Resident memory of a process in KiB, from /proc (None where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout:g} s")


def client_loop(url: str, path: str, body: dict, end: float, timeout: float, out: dict, lock: threading.Lock) -> None:
    """Requests back to back until the deadline; each records its latency or an error."""
    with httpx.Client(base_url=url, timeout=timeout) as http:
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                r = http.post(path, json=body)
                ok = r.status_code == 200 and (path != "/api/stream" or "event: done" in r.text)
                error = None if ok else f"HTTP {r.status_code}" + ("" if r.status_code != 200 else " (no done event)")
            except httpx.HTTPError as err:
                error = type(err).__name__
            elapsed = time.perf_counter() - start
            with lock:
                if error is None:
                    out["latencies"].append(elapsed)
                else:
                    out["errors"][error] = out["errors"].get(error, 0) + 1


def run_clients(url: str, path: str, body: dict, clients: int, seconds: float) -> dict:
    """``clients`` threads sending requests back to back for ``seconds``; their latencies and errors."""
    out: dict = {"latencies": [], "errors": {}}
    lock = threading.Lock()
    end = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, daemon=True, args=(url, path, body, end, seconds + 60, out, lock))
               for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="run directory (default: the shipped model)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--endpoint", choices=["generate", "stream"], default="generate")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--max-concurrency", type=int, default=2, help="passed to the server")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds of load before the measured run")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--json-out", help="also write the results here as JSON")
    args = p.parse_args(argv)
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 3600):
        p.error("--clients must be in 1..256 and --seconds in (0, 3600]")

    port = args.port or free_port()
    url = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "tvscript", "serve", "--host", HOST, "--port", str(port),
               "--max-concurrency", str(args.max_concurrency)]
    if args.model:
        command += ["--model", args.model]
    with tempfile.TemporaryFile("w+") as server_log:
        proc = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, args.startup_timeout)
            path = "/api/generate" if args.endpoint == "generate" else "/api/stream"
            body = {"prime": "jerry:", "max_new_tokens": args.max_new_tokens}
            rss_start = rss_kib(proc.pid)
            if args.warmup:  # first-use growth (allocator pools, worker threads) is not a leak
                run_clients(url, path, body, args.clients, args.warmup)
            rss_before = rss_kib(proc.pid)
            start = time.monotonic()
            out = run_clients(url, path, body, args.clients, args.seconds)
            elapsed = time.monotonic() - start
            rss_after, rss_peak = rss_kib(proc.pid), rss_kib(proc.pid, "VmHWM")
        except (RuntimeError, httpx.HTTPError, KeyboardInterrupt) as err:
            server_log.seek(0)
            tail = server_log.read()[-2000:]
            print(f"serve_load: error: {err}\n--- server output ---\n{tail}", file=sys.stderr)
            return 1
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # graceful: uvicorn finishes and exits
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    latencies = out["latencies"]
    result = {
        "endpoint": path, "clients": args.clients, "seconds": round(elapsed, 3),
        "max_new_tokens": args.max_new_tokens, "max_concurrency": args.max_concurrency,
        "requests": len(latencies), "errors": sum(out["errors"].values()), "error_kinds": out["errors"],
        "requests_per_second": len(latencies) / elapsed if elapsed else 0.0,
        "latency_p50_s": percentile(latencies, 0.50), "latency_p95_s": percentile(latencies, 0.95),
        "latency_mean_s": statistics.fmean(latencies) if latencies else None,
        "warmup_seconds": args.warmup, "server_rss_start_kib": rss_start, "server_rss_before_kib": rss_before, "server_rss_after_kib": rss_after, "server_rss_peak_kib": rss_peak,
        "cpu_count": os.cpu_count(),
    }

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x * 1000:.0f} ms"

    print(f"{result['requests']} requests in {elapsed:.1f} s from {args.clients} clients "
          f"({result['requests_per_second']:.2f} req/s), {result['errors']} errors {out['errors'] or ''}".rstrip())
    print(f"latency p50 {fmt(result['latency_p50_s'])}, p95 {fmt(result['latency_p95_s'])}")
    print(f"server RSS at start {rss_start} KiB; before the measured run {rss_before} KiB, after {rss_after} KiB, peak {rss_peak} KiB")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
