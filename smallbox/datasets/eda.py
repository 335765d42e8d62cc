"""Box-size analysis of a COCO detection json: how big are the boxes, and do COCO's size
buckets (32², 96²) fit them?

``run_eda(dataset, out_dir, buckets)`` writes PNG plots, ``summary.json`` and ``summary.md``
into ``out_dir`` atomically (a temporary folder renamed at the end) and returns the summary.
Areas are ``w*h`` of the bbox in original-image pixels² (what ``SizeBuckets`` and
``CocoDataset.areas()`` use); ``iscrowd`` boxes are left out, as COCO evaluation ignores them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import SmallboxError
from ..fileio import atomic_folder
from .boxtable import LARGE_DATASET, BoxTable, box_table, boxes_per_image
from .buckets import BUCKET_NAMES, SizeBuckets
from .coco import CocoDataset
from .manifest import recorded_fit
from .problems import (fix_command, format_problem_markdown, format_problem_table, problem_table, set_aside_text,
                       tolerance_to_clip)

# A COCO bucket holding less than this share of the boxes gives an AP that rests on too few
# boxes (the source report's AP_small of 0.010 vs 0.021 was such a number).
UNEVEN_FRACTION = 0.10
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
# One cell of the stride-8 P3 map of YOLO / FPN: boxes smaller than that at training size are
# hard to localise at all.
STRIDE_SMALLEST = 8


def bucket_sets(table: BoxTable, spec: str = "coco", fit: SizeBuckets | None = None) -> tuple[list[SizeBuckets], SizeBuckets]:
    """COCO's buckets, the fitted ones and the user's, without repeats; and the one the user
    chose (``spec``: ``coco``, ``fit`` or ``A,B``). ``fit`` is the dataset's recorded set when it
    is known (``manifest.recorded_fit``), else the table's tertiles (given 3 boxes or more)."""
    if fit is None and len(table) >= 3:
        fit = SizeBuckets.fit(table.area)
    chosen = fit if spec == "fit" and fit is not None else SizeBuckets.parse(spec, table.area)
    sets = [SizeBuckets.coco()] + ([fit] if fit is not None else [])
    if all(s.ranges() != chosen.ranges() for s in sets):
        sets.append(chosen)
    return sets, chosen


def count_buckets(table: BoxTable, buckets: SizeBuckets) -> dict:
    """Boxes and images per bucket, overall and per class.

    An image counts in a bucket when it holds at least one box of that bucket, so image counts
    of the buckets may add up to more than the number of images. Boxes outside every range (named
    ranges that stop short of the largest boxes) count in none.
    """
    index, names = buckets.index(table.area), buckets.names
    k = len(names)
    boxes = np.bincount(index[index >= 0], minlength=k)
    out = {
        "name": buckets.name,
        "names": list(names),
        "thresholds": list(buckets.thresholds),
        "ranges": [[lo, hi] for _, lo, hi in buckets.ranges()],
        "sides": [math.sqrt(t) for t in buckets.thresholds],
        "boxes": dict(zip(names, boxes.tolist())),
        "box_fraction": dict(zip(names, (boxes / max(len(table), 1)).tolist())),
        "images": dict(zip(names, _images_per_bucket(table.image_ids, index, k))),
        "per_class": [],
    }
    for cid, name in table.category_names.items():
        mine = table.category_ids == cid
        out["per_class"].append({
            "id": cid,
            "name": name,
            "boxes": dict(zip(names, np.bincount(index[mine & (index >= 0)], minlength=k).tolist())),
            "images": dict(zip(names, _images_per_bucket(table.image_ids[mine], index[mine], k))),
        })
    return out


def _images_per_bucket(image_ids: np.ndarray, index: np.ndarray, k: int = 3) -> list[int]:
    return [int(np.unique(image_ids[index == b]).size) for b in range(k)]


def _percentiles(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    out = {"min": float(values.min()), "mean": float(values.mean())}
    out.update({f"p{p:02d}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))})
    out["max"] = float(values.max())
    return out


def summarize(table: BoxTable, sets: list[SizeBuckets], chosen: SizeBuckets, source: str, imgsz: int = 640,
              fit_source: str | None = None) -> dict:
    """Everything the report shows, as plain json-able values. ``fit_source`` says where the
    fitted buckets came from (None: the table's own tertiles)."""
    per_image = boxes_per_image(table)
    buckets = {s.name: count_buckets(table, s) for s in sets}
    fitted = next((s for s in sets if s.name == "fit"), None)
    summary = {
        "source": source,
        "images": int(table.all_image_ids.size),
        "images_without_boxes": int((per_image == 0).sum()),
        "boxes": len(table),
        "crowd_boxes_excluded": table.crowd,
        "area_field_differs": _area_field_differs(table),
        "categories": _category_stats(table),
        "area": _percentiles(table.area),
        "side": _percentiles(np.sqrt(table.area)),
        "width": _percentiles(table.width),
        "height": _percentiles(table.height),
        "aspect_ratio": _percentiles(table.width / table.height),
        "boxes_per_image": _percentiles(per_image),
        "resized": _resized_stats(table, imgsz),
        "chosen": chosen.name,
        "buckets": buckets,
        "suggested_thresholds": fitted.to_dict() if fitted else None,
        "fit_source": (fit_source or f"fitted on the boxes of {source}") if fitted else None,
    }
    summary["advice"] = advice(summary)
    return summary


def _category_stats(table: BoxTable) -> list[dict]:
    out = []
    for cid, name in table.category_names.items():
        mine = table.category_ids == cid
        row = {"id": cid, "name": name, "boxes": int(mine.sum()), "images": int(np.unique(table.image_ids[mine]).size)}
        row["area"] = _percentiles(table.area[mine]) if mine.any() else None
        out.append(row)
    return out


def _area_field_differs(table: BoxTable) -> int:
    """Boxes whose json ``area`` differs from ``w*h`` by more than 1%. pycocotools buckets by
    ``area`` (the mask area on segmentation datasets), so such boxes may land in another bucket
    there than here."""
    a = table.area_field
    known = np.isfinite(a)
    return int((np.abs(a[known] - table.area[known]) > 0.01 * table.area[known]).sum())


def _resized_stats(table: BoxTable, imgsz: int) -> dict:
    """Box sides after the letterbox resize to ``imgsz`` (long image side -> imgsz) that
    Ultralytics applies: a box much smaller than one stride-8 cell there is hard to detect."""
    scale = imgsz / np.maximum(table.image_width, table.image_height)
    side = np.sqrt(table.area) * scale
    return {
        "imgsz": imgsz,
        "side": _percentiles(side),
        f"fraction_side_below_{STRIDE_SMALLEST}": float((side < STRIDE_SMALLEST).mean()),
        f"fraction_side_below_{2 * STRIDE_SMALLEST}": float((side < 2 * STRIDE_SMALLEST).mean()),
    }


def advice(summary: dict) -> list[str]:
    """Plain-language lines: do COCO's ranges fit this data, and what to use instead."""
    lines = []
    coco = summary["buckets"]["coco"]
    shares = " / ".join(f"{100 * coco['box_fraction'][b]:.0f}%" for b in BUCKET_NAMES)
    fit = summary["suggested_thresholds"]
    fit_text = ", ".join(f"{math.sqrt(t):g}²" for t in fit["thresholds"]) if fit else None
    thin = [b for b in BUCKET_NAMES if coco["box_fraction"][b] < UNEVEN_FRACTION]
    if thin:
        few = ", ".join(f"{b} ({_n_boxes(coco['boxes'][b])})" for b in thin)
        line = f"COCO's 32²/96² put {shares} of the boxes in small / medium / large; too few for a steady AP: {few}."
        if fit_text:
            arg = ",".join(f"{math.sqrt(t):g}^2" for t in fit["thresholds"])
            line += f" Thresholds that split the boxes into thirds ({summary['fit_source']}): {fit_text} -> smallbox eval --areas {arg} (or --areas fit)."
        lines.append(line)
    else:
        lines.append(f"COCO's 32²/96² put {shares} of the boxes in small / medium / large: every bucket has enough boxes.")
    diff = summary["area_field_differs"]
    if diff:
        lines.append(f"{diff} box(es) have an 'area' field unlike w*h (mask areas?): the COCO evaluator buckets by that field.")
    resized = summary["resized"]
    below = resized[f"fraction_side_below_{STRIDE_SMALLEST}"]
    if below > 0:
        lines.append(f"{100 * below:.1f}% of the boxes are under {STRIDE_SMALLEST} px a side at imgsz={resized['imgsz']}: "
                     "train or infer at a larger size (or sliced) for them.")
    return lines


def _n_boxes(n: int) -> str:
    return f"{n:,} box" if n == 1 else f"{n:,} boxes"


def run_eda(dataset: CocoDataset, out_dir, buckets: str = "coco", imgsz: int = 640, progress: bool | None = None) -> dict:
    """Analyse ``dataset`` and write plots, ``summary.json`` and ``summary.md`` into ``out_dir``.

    ``dataset`` may come from ``inspect_coco``: its problems are reported and the boxes it set
    aside counted. When it is a split of a converted dataset, the ``fit`` buckets are the ones
    recorded at convert (``manifest.recorded_fit``). ``out_dir`` is replaced only when it is empty
    or an earlier EDA output (holds ``summary.json``); nothing is written when any step fails.
    """
    from . import eda_plots  # matplotlib costs a second to import: only when plotting

    if imgsz <= 0:
        raise SmallboxError(f"imgsz must be positive, got {imgsz}")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    table = _usable_boxes(dataset, progress)
    recorded = recorded_fit(dataset.path)
    fit, fit_source = recorded or (None, None)
    sets, chosen = bucket_sets(table, buckets, fit)
    summary = summarize(table, sets, chosen, str(dataset.path), imgsz, fit_source)
    summary["problems"] = problem_table(dataset.problems)
    summary["set_aside"] = {section: dict(reasons) for section, reasons in dataset.set_aside.items()}
    if any(p.repairable for p in dataset.problems):
        summary["repair"] = fix_command(dataset.path, dataset.image_root)
    if tolerance_to_clip(dataset.problems) is not None:  # boxes a wider tolerance would clip
        summary["repair_wider"] = fix_command(dataset.path, dataset.image_root, tolerance_to_clip(dataset.problems))
    progress = len(table) >= LARGE_DATASET if progress is None else progress
    with atomic_folder(out_dir) as tmp:
        summary["plots"] = eda_plots.write_plots(table, sets, chosen, tmp, dataset=dataset, progress=progress)
        _write_json(summary, tmp / "summary.json")
        (tmp / "summary.md").write_text(format_markdown(summary), encoding="utf-8")
    return summary


def _usable_boxes(dataset: CocoDataset, progress) -> BoxTable:
    """The box table; with no usable box left, the problems say why."""
    try:
        return box_table(dataset, progress)
    except SmallboxError as e:
        if not dataset.problems:
            raise
        raise SmallboxError(f"{e}; every box was set aside:\n{format_problem_table(problem_table(dataset.problems))}") from None


def _check_replaceable(out_dir: Path):
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "summary.json").is_file())):
        raise SmallboxError(f"{out_dir}: exists and is not an earlier EDA output (no summary.json): give an empty or new folder")


def _write_json(obj, path: Path):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _fmt_sides(thresholds) -> str:
    return ", ".join(f"{math.sqrt(t):g}²" for t in thresholds)


def bucket_rows(summary: dict) -> list[tuple[list[str], tuple]]:
    """Per bucket set: its range names and the cells ``(set, count (share) per range, images)``."""
    rows = []
    for name, b in summary["buckets"].items():
        names = b.get("names") or list(BUCKET_NAMES)
        cells = [f"{b['boxes'][k]} ({100 * b['box_fraction'][k]:.0f}%)" for k in names]
        images = " / ".join(str(b["images"][k]) for k in names)
        rows.append((names, (f"{name} ({_fmt_sides(b['thresholds'])})", *cells, images)))
    return rows


def format_terminal(summary: dict) -> str:
    """The few lines printed after a run."""
    a = summary["area"]
    lines = [
        f"{summary['source']}: {summary['images']:,} images, {_n_boxes(summary['boxes'])}, {len(summary['categories'])} classes"
        + (f" ({summary['crowd_boxes_excluded']:,} crowd left out)" if summary["crowd_boxes_excluded"] else ""),
        f"box area px²: min {a['min']:.0f} ({math.sqrt(a['min']):.0f}²), median {a['p50']:.0f} ({math.sqrt(a['p50']):.0f}²), "
        f"max {a['max']:.0f} ({math.sqrt(a['max']):.0f}²)",
    ]
    header = None
    for names, r in bucket_rows(summary):
        if names != header:
            initials = "/".join(n[0] if names == list(BUCKET_NAMES) else n for n in names)
            lines.append(f"{'buckets':<24}" + "".join(f"{n:>14}" for n in names) + f"   images {initials}")
            header = names
        lines.append(f"{r[0]:<24}" + "".join(f"{c:>14}" for c in r[1:-1]) + f"   {r[-1]}")
    lines += summary["advice"]
    return "\n".join(lines + _problem_lines(summary))


def _problem_lines(summary: dict) -> list[str]:
    """The problems table and its notes (nothing for a clean file)."""
    if not summary.get("problems"):
        return []
    return ["", format_problem_table(summary["problems"])] + _problem_notes(summary)


def _problem_notes(summary: dict) -> list[str]:
    """How many boxes were analysed and what was set aside; the repair command."""
    aside = set_aside_text(summary.get("set_aside", {}))
    notes = [f"analysed {_n_boxes(summary['boxes'])}" + (f"; {aside}" if aside else "; none set aside")]
    if summary.get("repair"):
        notes.append(f"repair (with a change log): {summary['repair']}")
    if summary.get("repair_wider"):
        notes.append(f"boxes set aside for reaching farther outside than the tolerance; if that is annotation slack "
                     f"(not a width/height mix-up): {summary['repair_wider']}")
    return notes


def format_markdown(summary: dict) -> str:
    """``summary.md``: the same numbers as ``summary.json``, as tables."""
    out = [f"# Box-size EDA of `{summary['source']}`", ""]
    out.append(f"{summary['images']} images ({summary['images_without_boxes']} without boxes), {summary['boxes']} boxes, "
               f"{len(summary['categories'])} classes; {summary['crowd_boxes_excluded']} crowd boxes left out. "
               "Areas are bbox `w*h` in original pixels²; a box of area `a` is in bucket i when `t[i-1] <= a < t[i]`.")
    out += ["", "## Advice", ""] + [f"- {line}" for line in summary["advice"]]
    if summary.get("problems"):
        out += ["", "## Problems", ""] + format_problem_markdown(summary["problems"]) + [""]
        out += [f"- {note}" for note in _problem_notes(summary)]
    out += ["", "## Boxes per size bucket"]
    header = None
    for names, r in bucket_rows(summary):
        if names != header:
            out += ["", f"| buckets | {' | '.join(names)} | images with a box in {' / '.join(names)} |",
                    "|---|" + "---:|" * len(names) + "---|"]
            header = names
        out.append(f"| {' | '.join(r)} |")
    out += ["", "## Distributions", "", "| | min | p01 | p05 | p25 | median | p75 | p95 | p99 | max | mean |", "|---|" + "---:|" * 10]
    resized = f"side at imgsz={summary['resized']['imgsz']} (px)"
    for label, key in (("area (px²)", "area"), ("side √area (px)", "side"), ("width (px)", "width"), ("height (px)", "height"),
                       ("aspect w/h", "aspect_ratio"), ("boxes per image", "boxes_per_image"), (resized, None)):
        out.append(f"| {label} | " + " | ".join(_fmt_num(v) for v in _ordered(summary["resized"]["side"] if key is None else summary[key])) + " |")
    out += ["", "## Per class", ""]
    for name, b in summary["buckets"].items():
        names = b.get("names") or list(BUCKET_NAMES)
        short = " / ".join(n[0] for n in names) if names == list(BUCKET_NAMES) else " / ".join(names)
        out += [f"### {name} buckets ({_fmt_sides(b['thresholds'])})", "",
                f"| class | boxes {short} | images {short} |", "|---|---|---|"]
        for c in b["per_class"]:
            out.append(f"| {c['name']} | " + " / ".join(str(c["boxes"][k]) for k in names)
                       + " | " + " / ".join(str(c["images"][k]) for k in names) + " |")
        out.append("")
    out += ["### Area per class (px²)", "", "| class | boxes | images | p05 | median | p95 |", "|---|---:|---:|---:|---:|---:|"]
    for c in summary["categories"]:
        a = c["area"] or {}
        out.append(f"| {c['name']} | {c['boxes']} | {c['images']} | " + " | ".join(_fmt_num(a.get(k)) for k in ("p05", "p50", "p95")) + " |")
    out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in summary.get("plots", [])]
    return "\n".join(out) + "\n"


def _ordered(stats: dict) -> list:
    return [stats["min"]] + [stats[f"p{p:02d}"] for p in PERCENTILES] + [stats["max"], stats["mean"]]


def _fmt_num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
