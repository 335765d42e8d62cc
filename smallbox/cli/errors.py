"""``smallbox errors GT.json PRED.json [PRED_B.json]``: why boxes are missed, per size range:
TIDE's six error types as ΔAP50 (overall equal to ``tidecv``), a bar chart per size range, the
change from A to B, and confusion matrices with a background row and column."""

from __future__ import annotations

from pathlib import Path

from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..fileio import write_json_atomic
from .options import add_size_options, max_dets_for, output_file, output_folder


def add_arguments(p):
    p.add_argument("gt", help="ground-truth COCO json")
    p.add_argument("pred", nargs="+", metavar="PRED", help="COCO results json of a model; give two to see what changed from A to B")
    add_size_options(p)
    p.add_argument("--json", type=output_file, metavar="OUT", help="write the profiles (AP points, as TIDE prints them) here")
    p.add_argument("--out", type=output_folder, metavar="DIR",
                   help="write errors.png (per size range; with two files the change B - A), confusion_<name>.png and "
                        "the json into this folder")
    p.add_argument("--conf", type=float, default=0.25,
                   help="confusion matrix: detections scoring above this (strictly, as Ultralytics' matrix)")
    p.add_argument("--iou", type=float, default=0.45,
                   help="confusion matrix: a detection matches a box at an IoU above this (as Ultralytics')")


def run(args) -> int:
    from ..analysis.errors import MAIN_ERRORS, SPECIAL_ERRORS, confusion_matrices, error_profiles
    from ..predictions import load_predictions

    if len(args.pred) > 2:
        raise SmallboxError(f"give one or two prediction files (A, or A and B), got {len(args.pred)}")
    gt = load_coco(args.gt, check_files=False)
    buckets, source = size_buckets(args.areas, args.gt, gt.areas())
    max_dets = max_dets_for(args)
    ids = [im["id"] for im in gt.images]
    runs = {}
    for path in args.pred:
        preds = load_predictions(path, ids, gt.category_ids, gt_images=gt.images)
        runs[path] = {**error_profiles(gt, preds, buckets, max_dets), "confusion": confusion_matrices(gt, preds, buckets, args.conf, args.iou)}
    print(f"TIDE error profile (ΔAP50 in points: the AP50 gained by fixing every error of a type), size ranges "
          f"{buckets.describe()}" + (f" ({source})" if source else ""))
    for path, r in runs.items():
        print(f"\n{path}: AP50 {r['overall']['AP50']:.2f}")
        print(_table(r, MAIN_ERRORS + SPECIAL_ERRORS))
    if len(runs) == 2:
        (a, ra), (b, rb) = runs.items()
        print(f"\nB - A (below 0: B fixed that error): {b} - {a}")
        print(_table({"overall": _diff(ra["overall"], rb["overall"]),
                      "by_size": {k: _diff(ra["by_size"][k], rb["by_size"][k]) for k in ra["by_size"]}},
                     MAIN_ERRORS + SPECIAL_ERRORS, signed=True))
    out = {"areas": buckets.to_dict(), "max_dets": max_dets, "files": list(runs), **next(iter(runs.values()))} \
        if len(runs) == 1 else {"areas": buckets.to_dict(), "max_dets": max_dets, "runs": runs}
    if args.out:
        _write_folder(Path(args.out), runs, out)
    if args.json:
        write_json_atomic(out, args.json)
        print(f"wrote {args.json}")
    return 0


def _diff(a: dict, b: dict) -> dict:
    """B - A of each number; the ground-truth boxes are the same on both sides, not a difference."""
    return {**{k: b[k] - a[k] for k in a if isinstance(a[k], (int, float))}, "gt_boxes": b.get("gt_boxes")}


def _table(r: dict, kinds, signed: bool = False) -> str:
    """One row per size range (its ground-truth boxes first); a range without boxes reads "-"
    (as in pycocotools' -1), not 0.00, which would read as a model that finds none of them."""
    fmt = "{:+8.2f}" if signed else "{:8.2f}"
    rows = [("overall", r["overall"]), *r["by_size"].items()]
    lines = [f"{'':<12}{'boxes':>7}" + "".join(f"{k:>9}" for k in ("AP50", *kinds))]
    for name, p in rows:
        boxes = p.get("gt_boxes")
        if boxes == 0:
            lines.append(f"{name:<12}{0:>7}" + "".join(f"{'-':>9}" for _ in ("AP50", *kinds)))
            continue
        lines.append(f"{name:<12}{'' if boxes is None else boxes:>7}" + fmt.format(p["AP50"]) + " "
                     + " ".join(fmt.format(p[k]) for k in kinds))
    return "\n".join(lines)


def _write_folder(folder: Path, runs: dict, out: dict) -> None:
    from ..analysis.errors import plot_confusion, plot_profiles

    folder.mkdir(parents=True, exist_ok=True)
    names = _short_names(list(runs))
    profiles = {names[p]: {"overall": r["overall"], "by_size": r["by_size"]} for p, r in runs.items()}
    title = " vs ".join(profiles) if len(profiles) == 2 else next(iter(profiles))
    written = [plot_profiles(profiles if len(profiles) == 2 else next(iter(profiles.values())), folder / "errors.png", title)]
    for path, r in runs.items():
        written.append(plot_confusion(r["confusion"], folder / f"confusion_{names[path]}.png", names[path]))
    written.append(write_json_atomic(out, folder / "errors.json"))
    print("wrote " + ", ".join(str(p) for p in written))


def _short_names(paths: list[str]) -> dict[str, str]:
    """A file-name-safe name per file: its stem, with its folder's name when the stems repeat."""
    stems = {p: Path(p).name.split(".")[0] for p in paths}
    if len(set(stems.values())) == len(stems):
        return stems
    return {p: f"{Path(p).parent.name}_{stems[p]}" for p in paths}
