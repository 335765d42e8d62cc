"""The EDA's PNG plots. Figures are built on matplotlib's object API with the Agg canvas, so
no pyplot global state and no display are needed."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .buckets import BUCKET_NAMES, SizeBuckets
from .boxtable import BoxTable, boxes_per_image

# The source report clipped its histogram here to see the bulk of the boxes.
CLIP_AREA = 100_000
MAX_SCATTER_POINTS = 20_000
MAX_CLASSES_SHOWN = 40
CROPS_PER_BUCKET = 8
SET_STYLE = {"coco": ("tab:red", "--"), "fit": ("tab:green", "-"), "custom": ("tab:blue", ":")}
BUCKET_COLORS = ("tab:orange", "tab:cyan", "tab:purple")
DPI = 110


def write_plots(table: BoxTable, sets: list[SizeBuckets], chosen: SizeBuckets, out: Path, dataset=None, progress: bool = False) -> list[str]:
    """Write every plot into ``out``; returns the file names, in reading order."""
    jobs = [
        ("area_hist.png", lambda: area_hist(table, sets)),
        ("area_hist_clipped.png", lambda: area_hist_clipped(table, sets)),
        ("area_hist_log.png", lambda: area_hist_log(table, sets)),
        ("area_by_class.png", lambda: area_by_class(table, sets)),
        ("bucket_counts.png", lambda: bucket_counts(table, sets)),
        ("bucket_counts_by_class.png", lambda: bucket_counts_by_class(table, sets)),
        ("wh_scatter.png", lambda: wh_scatter(table, sets)),
        ("aspect_ratio.png", lambda: aspect_ratio(table)),
        ("boxes_per_image.png", lambda: boxes_per_image_hist(table)),
    ]
    if dataset is not None and dataset.image_root is not None:
        jobs.append(("sample_crops.png", lambda: sample_crops(table, chosen, dataset)))
    steps = jobs
    if progress:
        from tqdm import tqdm

        steps = tqdm(jobs, desc="plotting", unit="plot", leave=False)
    for name, make in steps:
        fig = make()
        fig.savefig(out / name, dpi=DPI)
    return [name for name, _ in jobs]


def _figure(width=9.0, height=5.0, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes.ravel()


def _hist(ax, values, bins, range=None):
    """A filled histogram drawn as one outline: ``ax.hist`` makes one patch per bin, which
    takes seconds to render at bins=1000 or on big data."""
    counts, edges = np.histogram(values, bins=bins, range=range)
    ax.stairs(counts, edges, fill=True, color="tab:gray")
    ax.set_ylim(bottom=0)


def _sides(thresholds) -> str:
    return ", ".join(f"{math.sqrt(t):g}²" for t in thresholds)


def _style(s: SizeBuckets) -> dict:
    """Line style of a bucket set; COCO's dashed line is drawn on top so it stays visible where
    a fitted threshold falls on the same value."""
    color, style = SET_STYLE.get(s.name, SET_STYLE["custom"])
    return {"color": color, "linestyle": style, "linewidth": 1.4, "zorder": 4 if s.name == "coco" else 3}


def _threshold_lines(ax, sets):
    """Draw each bucket set's two thresholds as vertical lines; one legend entry per set."""
    for s in sets:
        for k, t in enumerate(s.thresholds):
            ax.axvline(t, label=f"{s.name} thresholds ({_sides(s.thresholds)})" if k == 0 else None, **_style(s))


def _plain_log_ticks(axis):
    """Ticks at 1, 2, 5 x 10^k written as plain numbers (1,000 rather than 10³)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def area_hist(table: BoxTable, sets) -> Figure:
    """The report's two histograms: bins=100 and bins=1000 over the full area range."""
    fig, axes = _figure(12, 4.5, ncols=2)
    top = float(table.area.max())
    for ax, bins in zip(axes, (100, 1000)):
        _hist(ax, table.area, bins=bins, range=(0, top))
        _threshold_lines(ax, sets)
        ax.set(title=f"bins={bins} (each {top / bins:,.0f} px² wide)", xlabel="box area w·h (px²)", ylabel="boxes")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Box areas, full range 0–{top:,.0f} px² ({len(table):,} boxes)")
    return fig


def area_hist_clipped(table: BoxTable, sets) -> Figure:
    above = int((table.area > CLIP_AREA).sum())
    fig, (ax,) = _figure()
    _hist(ax, table.area[table.area <= CLIP_AREA], bins=100, range=(0, CLIP_AREA))
    _threshold_lines(ax, sets)
    ax.set(title=f"Box areas up to {CLIP_AREA:,} px², bins=100 ({above:,} larger boxes not shown)",
           xlabel="box area w·h (px²)", ylabel="boxes")
    ax.legend(fontsize=8)
    return fig


def _log_bins(values, n=60) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo * 1.01:
        lo, hi = lo / 1.5, hi * 1.5
    return np.geomspace(lo, hi, n + 1)


def area_hist_log(table: BoxTable, sets) -> Figure:
    fig, (ax,) = _figure()
    _hist(ax, table.area, bins=_log_bins(table.area))
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    _threshold_lines(ax, sets)
    ax.set(title="Box areas, log scale", xlabel="box area w·h (px², log scale)", ylabel="boxes")
    top = ax.secondary_xaxis("top", functions=(np.sqrt, np.square))
    _plain_log_ticks(top.xaxis)
    top.set_xlabel("side √area (px)")
    ax.legend(fontsize=8)
    return fig


def _classes_by_count(table: BoxTable) -> list[tuple[int, str]]:
    """Classes that have boxes, most boxes first, at most ``MAX_CLASSES_SHOWN``."""
    counts = {cid: int((table.category_ids == cid).sum()) for cid in table.category_names}
    ranked = sorted((c for c in counts if counts[c]), key=lambda c: -counts[c])[:MAX_CLASSES_SHOWN]
    return [(cid, table.category_names[cid]) for cid in ranked]


def _class_title(table: BoxTable, shown) -> str:
    hidden = len([c for c in table.category_names if (table.category_ids == c).any()]) - len(shown)
    return f" ({hidden} smaller classes not shown)" if hidden > 0 else ""


def area_by_class(table: BoxTable, sets) -> Figure:
    shown = _classes_by_count(table)[::-1]  # largest class on top
    fig, (ax,) = _figure(9, 1.6 + 0.38 * len(shown))
    data = [table.area[table.category_ids == cid] for cid, _ in shown]
    ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False, widths=0.6)
    ax.set_yticks(range(1, len(shown) + 1), [f"{name} (n={len(d):,})" for (_, name), d in zip(shown, data)])
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    _threshold_lines(ax, sets)
    ax.set(title="Box area per class (box: quartiles, whiskers: 5th–95th percentile)" + _class_title(table, shown),
           xlabel="box area w·h (px², log scale)")
    ax.legend(fontsize=8, loc="best")
    return fig


def _bar_labels(ax, bars, values, total):
    ax.bar_label(bars, [f"{v:,}\n{100 * v / total:.0f}%" if total else "0" for v in values], fontsize=7)


def bucket_counts(table: BoxTable, sets) -> Figure:
    """Boxes and images per bucket, one bar group per bucket set (COCO's next to the data's)."""
    fig, axes = _figure(12, 4.8, ncols=2)
    width = 0.8 / len(sets)
    k_most = max(len(s.names) for s in sets)
    x = np.arange(k_most)
    n_images = table.all_image_ids.size
    for k, s in enumerate(sets):
        index, n = s.index(table.area), len(s.names)
        boxes = np.bincount(index[index >= 0], minlength=n)
        images = [np.unique(table.image_ids[index == b]).size for b in range(n)]
        color = SET_STYLE.get(s.name, SET_STYLE["custom"])[0]
        label = f"{s.name} ({', '.join(s.names)})" if s.names != BUCKET_NAMES else f"{s.name} ({_sides(s.thresholds)})"
        _bar_labels(axes[0], axes[0].bar(x[:n] + k * width, boxes, width, color=color, label=label), boxes, len(table))
        _bar_labels(axes[1], axes[1].bar(x[:n] + k * width, images, width, color=color, label=label), images, n_images)
    same_names = all(s.names == sets[0].names for s in sets)
    ticks = list(sets[0].names) if same_names else [f"range {i + 1}" for i in range(k_most)]
    for ax, what, title in zip(axes, ("boxes", "images"), ("boxes per size bucket", "images holding at least one box of the bucket")):
        ax.set_xticks(x + width * (len(sets) - 1) / 2, ticks)
        ax.set(ylabel=what, title=title)
        ax.margins(y=0.2)
        ax.legend(fontsize=8)
    fig.suptitle(f"{len(table):,} boxes in {n_images:,} images")
    return fig


def bucket_counts_by_class(table: BoxTable, sets) -> Figure:
    """Per class: share of its boxes in small / medium / large, one panel per bucket set."""
    shown = _classes_by_count(table)[::-1]
    fig, axes = _figure(5.2 * len(sets), 1.8 + 0.38 * len(shown), ncols=len(sets), sharey=True)
    y = np.arange(len(shown))
    for ax, s in zip(axes, sets):
        index, n = s.index(table.area), len(s.names)
        counts = np.array([np.bincount(index[(table.category_ids == cid) & (index >= 0)], minlength=n)
                           for cid, _ in shown]).reshape(-1, n)
        shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        left = np.zeros(len(shown))
        colors = BUCKET_COLORS if n == len(BUCKET_COLORS) else matplotlib.colormaps["viridis"](np.linspace(0.1, 0.9, n))
        for b, name in enumerate(s.names):
            bars = ax.barh(y, shares[:, b], left=left, color=colors[b], label=name)
            ax.bar_label(bars, [f"{c:,}" if share > 0.06 else "" for c, share in zip(counts[:, b], shares[:, b])],
                         label_type="center", fontsize=7)
            left += shares[:, b]
        ax.set(title=f"{s.name} buckets ({_sides(s.thresholds)})", xlabel="share of the class's boxes", xlim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_yticks(y, [name for _, name in shown])
    fig.suptitle("Boxes per size bucket and class (numbers: box counts)" + _class_title(table, shown))
    return fig


def wh_scatter(table: BoxTable, sets) -> Figure:
    """Width vs height on log axes; each threshold is the isoline w·h = t (a straight line)."""
    fig, (ax,) = _figure(8, 7)
    keep = np.arange(len(table))
    if keep.size > MAX_SCATTER_POINTS:  # a readable cloud; the sample is seeded so reruns match
        keep = np.sort(np.random.default_rng(0).choice(keep.size, MAX_SCATTER_POINTS, replace=False))
    classes = _classes_by_count(table)
    if len(classes) <= 10:
        for k, (cid, name) in enumerate(classes):
            mine = keep[table.category_ids[keep] == cid]
            ax.scatter(table.width[mine], table.height[mine], s=6, alpha=0.5, color=f"C{k}", label=name)
    else:
        ax.scatter(table.width[keep], table.height[keep], s=4, alpha=0.3, color="tab:gray", label="boxes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    lo = min(table.width.min(), table.height.min()) / 1.5
    hi = max(table.width.max(), table.height.max()) * 1.5
    w = np.geomspace(lo, hi, 50)
    for s in sets:
        for k, t in enumerate(s.thresholds):
            ax.plot(w, t / w, label=f"{s.name}: w·h = {_sides(s.thresholds)}" if k == 0 else None, **_style(s))
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="box width (px, log scale)", ylabel="box height (px, log scale)",
           title=f"Box width vs height ({keep.size:,} of {len(table):,} boxes)")
    ax.legend(fontsize=8, markerscale=2)
    return fig


def aspect_ratio(table: BoxTable) -> Figure:
    ratio = table.width / table.height
    fig, (ax,) = _figure()
    _hist(ax, ratio, bins=_log_bins(ratio))
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.axvline(1.0, color="black", linewidth=1, label="square (w = h)")
    ax.set(title=f"Aspect ratio w/h (median {np.median(ratio):.2f})", xlabel="width / height (log scale)", ylabel="boxes")
    ax.legend(fontsize=8)
    return fig


def boxes_per_image_hist(table: BoxTable) -> Figure:
    counts = boxes_per_image(table)
    fig, (ax,) = _figure()
    top = int(counts.max())
    bins = np.arange(-0.5, top + 1.5) if top <= 100 else 100
    _hist(ax, counts, bins=bins)
    ax.set(title=f"Boxes per image ({counts.size:,} images, median {np.median(counts):g}, max {top})",
           xlabel="boxes in the image", ylabel="images")
    return fig


def sample_crops(table: BoxTable, chosen: SizeBuckets, dataset) -> Figure:
    """Boxes of each bucket, from smallest to largest within it, cut out with some context, to
    see whether the small ones are distinguishable from the background at all. Images are turned
    by their EXIF orientation, as Ultralytics loads them and as the boxes were drawn."""
    from PIL import Image, ImageOps

    images = {im["id"]: im for im in dataset.images}
    index, n = chosen.index(table.area), len(chosen.names)
    fig, axes = _figure(1.6 * CROPS_PER_BUCKET, 2.0 * n, ncols=CROPS_PER_BUCKET, nrows=n)
    axes = axes.reshape(n, CROPS_PER_BUCKET)
    for b, name in enumerate(chosen.names):
        members = np.flatnonzero(index == b)
        members = members[np.argsort(table.area[members], kind="stable")]
        picks = members[np.unique(np.linspace(0, members.size - 1, CROPS_PER_BUCKET).round().astype(int))] if members.size else []
        for ax in axes[b]:
            ax.set_axis_off()
        for ax, i in zip(axes[b], picks):
            with Image.open(dataset.image_path(images[int(table.image_ids[i])])) as raw:
                image = ImageOps.exif_transpose(raw).convert("RGB")
            _show_crop(ax, image, i, table)
        axes[b][0].set_axis_on()
        axes[b][0].set(xticks=[], yticks=[])
        axes[b][0].set_ylabel(f"{name}\n({members.size:,} box{'es' if members.size != 1 else ''})", fontsize=9)
    fig.suptitle(f"Boxes per {chosen.name} bucket ({_sides(chosen.thresholds)}), smallest to largest, with context")
    return fig


def _show_crop(ax, image, i: int, table: BoxTable):
    """Box ``i`` with a margin of one box size around it (at least 16 px), box outlined."""
    from matplotlib.patches import Rectangle

    x, y, w, h = table.x[i], table.y[i], table.width[i], table.height[i]
    margin = max(w, h, 16)
    x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
    x1, y1 = min(image.width, int(x + w + margin)), min(image.height, int(y + h + margin))
    ax.imshow(np.asarray(image.crop((x0, y0, x1, y1))))
    ax.add_patch(Rectangle((x - x0, y - y0), w, h, fill=False, edgecolor="red", linewidth=1))
    ax.set_title(f"{table.category_names[int(table.category_ids[i])]}\n{w:g}×{h:g}", fontsize=7)

