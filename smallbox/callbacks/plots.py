"""COCO AP by size against the epoch, drawn from the results.csv columns both training loops write
(``coco/AP`` ... ``coco/AP_large``, ``<set>/AP_small`` ...): one panel per bucket set, the same
colour for a size in every panel. The YOLO run's ``results_coco.png`` (Ultralytics' own
results.png plots only its columns) and the torchvision run's ``results.png`` (with its loss)."""

from __future__ import annotations

import csv
from pathlib import Path

from ..fileio import atomic_path
from ..runfolder import RESULTS_CSV

YOLO_PLOT = "results_coco.png"
# column -> (colour, line style); AP, AP50 and AP75 exist in the coco panel only
LINES = {"AP": ("black", "-"), "AP50": ("dimgray", ":"), "AP75": ("darkgray", ":"),
         "AP_small": ("tab:red", "-"), "AP_medium": ("tab:orange", "-"), "AP_large": ("tab:green", "-")}


def plot_ap_by_epoch(rows: list[dict], path, loss_column: str | None = None) -> Path:
    """Write a PNG: the ``loss_column`` (if given) and, per bucket set, its AP columns by epoch.

    Args:
        rows: results.csv rows (numbers or their text; ``""`` and negative values, i.e. epochs
            without validation and buckets without boxes, are left out).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(c.split("/")[0] for row in rows for c in row if c.split("/")[-1].startswith("AP")))
    panels = ([loss_column] if loss_column else []) + sets
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == loss_column:
            _line(ax, rows, loss_column, marker="o")
            ax.set(title=loss_column, xlabel="epoch")
            continue
        for name, (colour, style) in LINES.items():
            _line(ax, rows, f"{panel}/{name}", color=colour, linestyle=style, label=name)
        ax.set(title=f"{panel} buckets: AP by size", xlabel="epoch", ylim=(0, None))
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def _line(ax, rows, column: str, **style) -> None:
    points = [(float(r["epoch"]), v) for r in rows if (v := _value(r.get(column))) is not None]
    if points:
        ax.plot(*zip(*points), marker=style.pop("marker", "."), **style)


def _value(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def on_train_end(trainer) -> None:
    """Ultralytics callback: ``results_coco.png`` beside ``results.png`` (when ``plots=True``)."""
    from ultralytics.utils import RANK

    csv_path = Path(trainer.save_dir) / RESULTS_CSV
    if RANK in {-1, 0} and trainer.args.plots and csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
        plot_ap_by_epoch(rows, Path(trainer.save_dir) / YOLO_PLOT)
