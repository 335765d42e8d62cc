"""Training curves of a run folder (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ...callbacks.plots import plot_ap_by_epoch

LOSS_COLUMN = "train/loss"


def plot_results(rows: list[dict], metric_columns: list[str], path: Path) -> Path | None:
    """The loss and the AP columns among ``metric_columns`` of ``results.csv`` against the epoch:
    the same AP-by-size panels as a YOLO run's results_coco.png."""
    kept = ("epoch", LOSS_COLUMN, *metric_columns)
    return plot_ap_by_epoch([{k: r.get(k) for k in kept} for r in rows], path, loss_column=LOSS_COLUMN)
