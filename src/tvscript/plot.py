"""Loss curve of a run: train and valid loss against step, from metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import atomic_write_bytes


def plot_metrics(metrics_csv: Path, out_png: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[int], list[float]]] = {"train": ([], []), "valid": ([], [])}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] in series and row["loss"]:
                series[row["split"]][0].append(int(row["step"]))
                series[row["split"]][1].append(float(row["loss"]))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, (steps, losses) in series.items():
        if steps:
            ax.plot(steps, losses, marker="o" if name == "valid" else None, label=f"{name} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
