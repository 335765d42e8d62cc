"""Training curves of a run folder (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ...fileio import atomic_path


def plot_results(rows: list[dict], metric_columns: list[str], path: Path) -> Path | None:
    """Loss and every AP column of ``results.csv`` against the epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r.get("train/loss") for r in rows], marker="o")
    ax_loss.set(title="train loss", xlabel="epoch")
    for col in metric_columns:
        points = [(r["epoch"], r[col]) for r in rows if r.get(col) not in ("", None) and r[col] >= 0]
        if points and col.split("/")[1] != "AR_100":
            ax_ap.plot(*zip(*points), marker=".", label=col)
    ax_ap.set(title="val AP", xlabel="epoch")
    if ax_ap.lines:
        ax_ap.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
