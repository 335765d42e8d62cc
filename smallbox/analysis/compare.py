"""What model A finds that model B misses, and the reverse, per size bucket and class.

A ground-truth box is *found* by a model when one of its detections of the same class, with a
score of at least ``score_thr``, is matched to it at IoU >= ``iou`` (greedy by score, one
detection per box: COCO's own matching, :func:`smallbox.evaluate.matching.match_pairs`). Detections above the threshold matched to nothing are false
positives, bucketed by their own area. Crowd boxes are left out (COCO ignores them). For every
box one model misses, the crop shows the other model's box and the missing model's closest box of
that class at any score, which tells a low score (it was there) from a bad or absent box.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from tqdm import tqdm

from ..datasets.buckets import SizeBuckets
from ..datasets.coco import CocoDataset
from ..errors import SmallboxError
from ..evaluate.matching import box_iou_xywh, match_pairs
from ..fileio import atomic_path, write_json_atomic, write_text_atomic

OUTCOMES = ("both", "a_only", "b_only", "neither")
COLORS = {"GT": (0, 200, 0), "A": (30, 110, 255), "B": (255, 60, 30)}
TILE = 160
CAPTION = 30


def _by_image_cat(items) -> dict:
    out = defaultdict(list)
    for x in items:
        out[x["image_id"], x["category_id"]].append(x)
    return out


def _sorted_dets(dets: list[dict]) -> tuple[list[dict], np.ndarray]:
    dets = sorted(dets, key=lambda d: -d["score"])
    return dets, np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)


def _det_info(det: dict | None, gt_xywh) -> dict | None:
    if det is None:
        return None
    iou = box_iou_xywh(np.array([det["bbox"]], float), np.array([gt_xywh], float), np.zeros(1, bool))[0, 0]
    return {"bbox": [float(v) for v in det["bbox"]], "score": float(det["score"]), "iou": float(iou)}


def compare_predictions(gt: CocoDataset, preds_a: list, preds_b: list, buckets: SizeBuckets,
                        score_thr: float = 0.3, iou: float = 0.5) -> dict:
    """Counts and lists of the comparison (see the module docstring).

    Returns:
        ``{"counts": {"all"|bucket: {outcome or "fp_a"/"fp_b"/"gt": n}}, "by_class": {class:
        {bucket: {...}}}, "a_only": [box], "b_only": [box]}``; a box is ``{"annotation_id",
        "image_id", "file_name", "category", "bucket", "area", "gt_bbox", "a", "b"}`` where
        ``a``/``b`` is that model's box (matched one, else its closest of the class at any
        score) as ``{"bbox", "score", "iou"}`` or None.
    """
    names = gt.category_names
    images = {im["id"]: im for im in gt.images}
    gts = _by_image_cat(a for a in gt.annotations if not a.get("iscrowd"))
    dets = {"A": _by_image_cat(preds_a), "B": _by_image_cat(preds_b)}
    crowd = _by_image_cat(a for a in gt.annotations if a.get("iscrowd"))
    counts = defaultdict(lambda: defaultdict(lambda: {k: 0 for k in ("gt", *OUTCOMES, "fp_a", "fp_b")}))
    lists = {"a_only": [], "b_only": []}
    keys = sorted(set(gts) | set(dets["A"]) | set(dets["B"]))
    for image_id, cat in keys:
        boxes = gts.get((image_id, cat), [])
        gt_xywh = np.array([b["bbox"] for b in boxes], dtype=np.float64).reshape(-1, 4)
        found, closest = {}, {}
        for side in ("A", "B"):
            all_dets, all_xywh = _sorted_dets(dets[side].get((image_id, cat), []))
            kept = [i for i, d in enumerate(all_dets) if d["score"] >= score_thr]
            iou_all = box_iou_xywh(all_xywh, gt_xywh, np.zeros(len(boxes), bool))
            det_of_gt = match_pairs(iou_all[kept], iou)
            found[side] = [all_dets[kept[j]] if j >= 0 else None for j in det_of_gt]
            closest[side] = [all_dets[int(np.argmax(iou_all[:, g]))] if len(all_dets) and iou_all[:, g].max() > 0 else None
                             for g in range(len(boxes))]
            matched = set(kept[j] for j in det_of_gt if j >= 0)
            _count_false_positives(counts, names[cat], buckets, side, [all_dets[i] for i in kept if i not in matched],
                                   crowd.get((image_id, cat), []))
        for g, box in enumerate(boxes):
            bucket = range_of(buckets, box["bbox"][2] * box["bbox"][3])
            outcome = {(True, True): "both", (True, False): "a_only", (False, True): "b_only", (False, False): "neither"}[
                (found["A"][g] is not None, found["B"][g] is not None)]
            for key in (bucket, "all"):
                counts[names[cat]][key]["gt"] += 1
                counts[names[cat]][key][outcome] += 1
                counts["all"][key]["gt"] += 1
                counts["all"][key][outcome] += 1
            if outcome in lists:
                lists[outcome].append({
                    "annotation_id": box["id"], "image_id": image_id, "file_name": images[image_id]["file_name"],
                    "category": names[cat], "bucket": bucket, "area": float(box["bbox"][2] * box["bbox"][3]),
                    "gt_bbox": [float(v) for v in box["bbox"]],
                    "a": _det_info(found["A"][g] or closest["A"][g], box["bbox"]),
                    "b": _det_info(found["B"][g] or closest["B"][g], box["bbox"])})
    for entries in lists.values():  # by size bucket, then class: the order of the sheet and the page
        order = [*buckets.names, OUTSIDE]
        entries.sort(key=lambda e: (order.index(e["bucket"]), e["category"], e["annotation_id"]))
    all_counts = {k: dict(v) for k, v in counts.pop("all", {}).items()}
    by_class = {c: {k: dict(v) for k, v in per.items()} for c, per in sorted(counts.items())}
    return {"counts": all_counts, "by_class": by_class, **lists}


OUTSIDE = "outside"  # a box beyond every named range


def range_of(buckets: SizeBuckets, area: float) -> str:
    """The name of the size range a box area falls in (``outside`` where none does)."""
    i = int(buckets.index(area))
    return buckets.names[i] if i >= 0 else OUTSIDE


def _count_false_positives(counts, class_name: str, buckets: SizeBuckets, side: str, unmatched: list, crowd: list):
    if crowd and unmatched:
        # a detection on a crowd region is neither right nor wrong (COCO ignores it)
        ious = box_iou_xywh(np.array([d["bbox"] for d in unmatched], float),
                            np.array([c["bbox"] for c in crowd], float), np.ones(len(crowd), bool))
        unmatched = [d for d, row in zip(unmatched, ious) if row.max() < 0.5]
    key = "fp_a" if side == "A" else "fp_b"
    for d in unmatched:
        bucket = range_of(buckets, d["bbox"][2] * d["bbox"][3])
        for who, where in ((class_name, bucket), (class_name, "all"), ("all", bucket), ("all", "all")):
            counts[who][where][key] += 1


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def crop_tile(image: Image.Image, entry: dict) -> Image.Image:
    """``TILE x (TILE + CAPTION)`` RGB tile: the box with context (3x its size, at least 64 px),
    GT, A's and B's boxes drawn in ``COLORS`` (xywh_abs of the image, scaled into the tile), and a
    caption."""
    x, y, w, h = entry["gt_bbox"]
    side = max(64.0, 3 * max(w, h))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
    x1, y1 = min(float(image.width), cx + side / 2), min(float(image.height), cy + side / 2)
    scale = TILE / max(x1 - x0, y1 - y0)
    crop = image.crop((int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1)))).convert("RGB")
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.NEAREST)
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    tile.paste(crop, (0, 0))
    draw = ImageDraw.Draw(tile)
    ox, oy = int(x0), int(y0)
    # Thinner lines on top: where boxes coincide the outer pixel is B, then A, then GT.
    for label, box, width in (("GT", {"bbox": entry["gt_bbox"]}, 3), ("A", entry["a"], 2), ("B", entry["b"], 1)):
        if box is None:
            continue
        bx, by, bw, bh = box["bbox"]
        draw.rectangle([(bx - ox) * scale, (by - oy) * scale, (bx + bw - ox) * scale, (by + bh - oy) * scale],
                       outline=COLORS[label], width=width)
    draw.text((2, TILE + 2), f"#{entry['annotation_id']} {entry['category']} {entry['bucket']}", fill="black", font=_font(11))
    draw.text((2, TILE + 15), f"A {_score(entry['a'])}  B {_score(entry['b'])}", fill="black", font=_font(11))
    return tile


def _score(det: dict | None) -> str:
    return "none" if det is None else f"{det['score']:.2f}/IoU{det['iou']:.2f}"


def legend_strip(width: int) -> Image.Image:
    strip = Image.new("RGB", (width, 24), "white")
    draw = ImageDraw.Draw(strip)
    x = 6
    for label, text in (("GT", "ground truth"), ("A", "model A"), ("B", "model B")):
        draw.rectangle([x, 6, x + 14, 18], outline=COLORS[label], width=3)
        draw.text((x + 20, 5), text, fill="black", font=_font(13))
        x += 130
    draw.text((x, 5), "caption: score/IoU of each model's box", fill="black", font=_font(13))
    return strip


def contact_sheet(sections: list[tuple[str, list[Image.Image]]], columns: int = 8) -> Image.Image:
    """Titled grids of tiles, one per section, under a colour legend."""
    tile_h = TILE + CAPTION
    width = columns * (TILE + 4) + 4
    heights = [28 + max(1, math.ceil(len(tiles) / columns)) * (tile_h + 4) for _, tiles in sections]
    sheet = Image.new("RGB", (width, 24 + sum(heights)), "white")
    sheet.paste(legend_strip(width), (0, 0))
    draw = ImageDraw.Draw(sheet)
    y = 24
    for (title, tiles), height in zip(sections, heights):
        draw.text((6, y + 6), title, fill="black", font=_font(15))
        for i, tile in enumerate(tiles):
            sheet.paste(tile, (4 + (i % columns) * (TILE + 4), y + 28 + (i // columns) * (tile_h + 4)))
        if not tiles:
            draw.text((6, y + 40), "(none)", fill="gray", font=_font(13))
        y += height
    return sheet


def write_comparison(gt: CocoDataset, preds_a: list, preds_b: list, out_dir, buckets: SizeBuckets,
                     score_thr: float = 0.3, iou: float = 0.5, max_crops: int = 200, names=("A", "B")) -> dict:
    """Write ``summary.json``, ``crops/*.png``, ``contact_sheet.png``, ``pr_by_size.png`` (both
    models' precision-recall per size bucket) and ``index.html`` into ``out_dir``; returns the
    summary."""
    out = Path(out_dir)
    result = compare_predictions(gt, preds_a, preds_b, buckets, score_thr, iou)
    summary = {"a": names[0], "b": names[1], "score_thr": score_thr, "iou": iou, "buckets": buckets.to_dict(), **result}
    images = {im["id"]: im for im in gt.images}
    todo = [(k, e) for k in ("a_only", "b_only") for e in result[k][:max_crops]]
    missing = [(e["image_id"], gt.image_path(images[e["image_id"]])) for _, e in todo
               if not gt.image_path(images[e["image_id"]]).is_file()]
    if missing:  # before anything is written
        raise SmallboxError(f"{gt.path}: image {missing[0][0]}: file not found: {missing[0][1]}"
                            + (f" (and {len(missing) - 1} more crops)" if len(missing) > 1 else ""))
    (out / "crops").mkdir(parents=True, exist_ok=True)
    sections = []
    tiles = defaultdict(list)
    cache = {}
    for kind, entry in tqdm(todo, desc="crops", unit="box", disable=len(todo) < 50):
        image_id = entry["image_id"]
        if image_id not in cache:
            cache.clear()
            path = gt.image_path(images[image_id])
            try:
                with Image.open(path) as im:  # EXIF applied: the boxes are in the image as Ultralytics loads it
                    cache[image_id] = ImageOps.exif_transpose(im)
                    cache[image_id].load()
            except (FileNotFoundError, OSError) as e:
                raise SmallboxError(f"{path}: cannot read image {image_id} ({e})") from None
        tile = crop_tile(cache[image_id], entry)
        entry["crop"] = f"crops/{kind}_{entry['annotation_id']}.png"
        tile.save(out / entry["crop"])
        tiles[kind].append(tile)
    for kind, title in (("a_only", f"{names[0]} finds, {names[1]} misses"), ("b_only", f"{names[1]} finds, {names[0]} misses")):
        shown = len(tiles[kind])
        sections.append((f"{title}: {len(result[kind])} box(es)" + (f", first {shown} shown" if shown < len(result[kind]) else ""),
                         tiles[kind]))
    from .plots import plot_pr_curves, pr_curves_by_size

    curves = {names[0]: pr_curves_by_size(gt, preds_a, [buckets], iou), names[1]: pr_curves_by_size(gt, preds_b, [buckets], iou)}
    plot_pr_curves(curves, out / "pr_by_size.png", iou)
    from .errors import error_profiles, plot_profiles

    profiles = {names[0]: error_profiles(gt, preds_a, buckets), names[1]: error_profiles(gt, preds_b, buckets)}
    plot_profiles(profiles, out / "errors.png", f"{names[0]} vs {names[1]}")
    write_json_atomic(profiles, out / "errors.json")
    summary["errors"] = {name: {g: {k: round(v, 4) for k, v in p.items() if isinstance(v, float)}
                                for g, p in [("overall", prof["overall"]), *prof["by_size"].items()]}
                         for name, prof in profiles.items()}
    sheet = contact_sheet(sections)
    with atomic_path(out / "contact_sheet.png") as tmp:
        sheet.save(tmp)
    write_text_atomic(html_page(summary), out / "index.html")
    write_json_atomic(summary, out / "summary.json")
    return summary


def _count_table(counts: dict, rows: list[str], first: str) -> str:
    cols = ("gt", *OUTCOMES, "fp_a", "fp_b")
    head = "".join(f"<th>{c}</th>" for c in (first, *cols))
    body = "".join("<tr><td>" + html.escape(r) + "</td>" + "".join(f"<td>{counts[r].get(c, 0)}</td>" for c in cols) + "</tr>"
                   for r in rows if r in counts)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(e: dict) -> str:
    esc = html.escape
    caption = (f"#{e['annotation_id']} {esc(e['category'])} in {esc(e['file_name'])}<br>"
               f"A {_score(e['a'])} &middot; B {_score(e['b'])}")
    return f'<figure><img src="{esc(e["crop"])}" alt="box {e["annotation_id"]}"><figcaption>{caption}</figcaption></figure>'


def html_page(summary: dict) -> str:
    """A static page: settings, colour legend, counts by size bucket and by class, the crops
    (relative paths, so the folder can be moved or served as is)."""
    esc = html.escape
    a, b = esc(summary["a"]), esc(summary["b"])
    legend = " ".join(f'<span class="sw" style="border-color:rgb{COLORS[k]}"></span>{t}'
                      for k, t in (("GT", "ground truth"), ("A", f"A = {a}"), ("B", f"B = {b}")))
    names = list(SizeBuckets.from_dict(summary["buckets"]).names)
    by_bucket = _count_table(summary["counts"], [*names, *([OUTSIDE] if OUTSIDE in summary["counts"] else []), "all"],
                             "size bucket")
    by_class = _count_table({c: v.get("all", {}) for c, v in summary["by_class"].items()}, list(summary["by_class"]), "class")
    parts = [f"<h1>{a} vs {b}</h1>",
             f"<p>found = a detection of the class with score &ge; {summary['score_thr']:g} at IoU &ge; {summary['iou']:g}; "
             f"size buckets {esc(SizeBuckets.from_dict(summary['buckets']).describe())}; fp_a / fp_b: unmatched detections by their own size.</p>",
             f"<p class=legend>{legend}</p>", "<h2>By size bucket</h2>", by_bucket, "<h2>By class</h2>", by_class,
             '<p><a href="contact_sheet.png">contact sheet</a> &middot; <a href="summary.json">summary.json</a></p>',
             "<h2>Precision-recall by size bucket (all scores)</h2>", '<img class=plot src="pr_by_size.png" alt="PR curves">',
             "<h2>Why boxes are missed: error profile per size bucket (TIDE, ΔAP50)</h2>",
             '<p>Each model\'s AP50 gained by fixing every error of a type; the last panel is B − A (below 0: B fixed it). '
             'Numbers: <a href="errors.json">errors.json</a>.</p>', '<img class=plot src="errors.png" alt="error profiles">']
    for kind, title in (("a_only", f"{a} finds, {b} misses"), ("b_only", f"{b} finds, {a} misses")):
        parts.append(f"<h2>{title} ({len(summary[kind])})</h2>")
        for bucket in [*names, OUTSIDE]:
            entries = sorted((e for e in summary[kind] if e["bucket"] == bucket and "crop" in e),
                             key=lambda e: (e["category"], e["annotation_id"]))
            for category in dict.fromkeys(e["category"] for e in entries):
                parts.append(f"<h3>{bucket} &middot; {esc(category)}</h3><div class=grid>")
                parts += [_figure(e) for e in entries if e["category"] == category]
                parts.append("</div>")
    style = ("body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}.grid{display:flex;flex-wrap:wrap;gap:8px}"
             "figure{margin:0;width:170px;font-size:11px}figure img{width:160px;border:1px solid #ccc}img.plot{max-width:100%}"
             ".sw{display:inline-block;width:14px;height:10px;border:3px solid;margin:0 4px 0 12px}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{a} vs {b}</title><style>{style}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
