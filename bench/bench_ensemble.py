"""`smallbox ensemble` vs ensemble_boxes 1.0.9, every method (WBF, NMS, soft-NMS, NMW), on

- 4x500: 4 models x 500 DeepPCB-sized images, built here from the bundled files (``make_4x500``);
- 2x200: the two bundled DeepPCB prediction files on the 200 val images;

then the cold first call (numba compiling, or loading its disk cache), and AP / AP_small of each
bundled model and of their fusions on the DeepPCB val split.

Timing, the same way for both libraries: a warm-up call on one image per method first (imports,
ensemble_boxes' own numba functions compiling, smallbox's kernels loading), then ``--repeats``
runs alternating which library goes first, median of wall and CPU time (``time.process_time``:
on a shared machine wall time mostly measures the neighbours). ensemble_boxes is timed alone on
inputs already normalised per image; smallbox from the COCO results lists to the fused COCO
results list (parsing, normalising, fusing, exporting): more work on smallbox's side.

Parity, after every run: smallbox's fused arrays (``fuse``, before the export's rounding) against
ensemble_boxes' output: same image ids, labels and order, max |difference| of boxes and scores 0.
Targets (WBF, CPU time): >= 20x on 4x500, >= 10x on 2x200. A failed parity check or a missed
target is named and the script exits with status 1.

Usage: python bench/bench_ensemble.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
METHODS = ("wbf", "nms", "soft-nms", "nmw")
REFERENCE = {"wbf": "weighted_boxes_fusion", "nms": "nms", "soft-nms": "soft_nms", "nmw": "non_maximum_weighted"}
TARGETS = {("wbf", "4x500"): 20.0, ("wbf", "2x200"): 10.0}
SHIFTS = (0, 10000, 20000)  # image id offsets of the copies (the val ids go up to 1490)


def load_bundled():
    """``(members, images)``: the two bundled prediction files (COCO results) and the val images."""
    members = [json.load(gzip.open(p, "rt")) for p in sorted((DEEPPCB / "predictions").glob("*.json.gz"))]
    images = json.loads((DEEPPCB / "annotations" / "val.json").read_text())["images"]
    return members, images


def jitter(preds: list[dict], seed: int, shift: int = 0) -> list[dict]:
    """The same detections moved a little (deterministic per seed), image ids + ``shift``: each
    corner by N(0, 3 % of the box side), the score's logit by N(0, 0.3); boxes and scores rounded
    to float32 as in an export, boxes then under 0.001 dropped (the exports' conf threshold)."""
    rng = np.random.default_rng(seed)
    n = len(preds)
    xywh = np.array([p["bbox"] for p in preds], dtype=np.float64).reshape(n, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    xyxy = np.clip(xyxy + rng.normal(0.0, 0.03, (n, 4)) * np.tile(xywh[:, 2:], 2), 0.0, 640.0)
    xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 0.5)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float32).astype(np.float64)
    score = np.array([p["score"] for p in preds])
    logit = np.log(score / (1 - score)) + rng.normal(0.0, 0.3, n)
    score = (1 / (1 + np.exp(-logit))).astype(np.float32).astype(np.float64)
    return [{"image_id": p["image_id"] + shift, "category_id": p["category_id"], "bbox": b, "score": s}
            for p, b, s in zip(preds, xywh.tolist(), score.tolist()) if s >= 0.001]


def make_4x500(n_images: int = 500):
    """``(members [4 COCO results lists], images [n_images])``: the 200 val images, then copies with
    ids + 10000 and + 20000. Models 1 and 2: the bundled files, unchanged on the val images and
    jittered on the copies; models 3 and 4: models 1 and 2 jittered with other seeds."""
    bundled, val = load_bundled()
    images = [{**im, "id": im["id"] + shift} for shift in SHIFTS for im in val][:n_images]
    keep = {im["id"] for im in images}
    members = []
    for m in range(4):
        preds = []
        for k, shift in enumerate(SHIFTS):
            base = bundled[m % 2]
            part = [dict(p) for p in base] if m < 2 and shift == 0 else jitter(base, seed=100 * m + k, shift=shift)
            preds += [p for p in part if p["image_id"] in keep]
        members.append(preds)
    return members, images


def per_image_inputs(members, images):
    """ensemble_boxes' inputs, image by image: lists (one per model) of xyxy_norm, scores, labels."""
    by_image = [{} for _ in members]
    for m, preds in enumerate(members):
        for p in preds:
            by_image[m].setdefault(p["image_id"], []).append(p)
    inputs = []
    for im in images:
        w, h = im["width"], im["height"]
        boxes, scores, labels = [], [], []
        for m in range(len(members)):
            ps = by_image[m].get(im["id"], [])
            boxes.append(np.array([[p["bbox"][0] / w, p["bbox"][1] / h, (p["bbox"][0] + p["bbox"][2]) / w,
                                    (p["bbox"][1] + p["bbox"][3]) / h] for p in ps]).reshape(-1, 4))
            scores.append(np.array([p["score"] for p in ps]))
            labels.append(np.array([p["category_id"] for p in ps]))
        if sum(map(len, scores)):  # ensemble_boxes.nms fails on an image without boxes
            inputs.append((im["id"], boxes, scores, labels))
    return inputs


def run_reference(inputs, method):
    """``(wall s, cpu s, [(image id, label, xyxy_norm, score)])`` of ensemble_boxes image by image."""
    import ensemble_boxes

    fn = getattr(ensemble_boxes, REFERENCE[method])
    out = []
    # Its NMS prints a line per image with a corner > 1 (some jittered boxes): not to the terminal.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        for image_id, boxes, scores, labels in inputs:
            out.append((image_id, fn(boxes, scores, labels)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, [(i, int(la), bb, sc) for i, (b, s, lab) in out for bb, sc, la in zip(b, s, lab)]


def run_smallbox(members, images, method):
    from smallbox.fusion.ensemble import ensemble_predictions

    wall, cpu = time.perf_counter(), time.process_time()
    ensemble_predictions(members, images, method)
    return time.perf_counter() - wall, time.process_time() - cpu


def parity(members, images, method, ref) -> str | None:
    """None when smallbox's fused arrays equal ensemble_boxes' output exactly, else what differs."""
    from smallbox.fusion.ensemble import fuse, to_detections

    ids = [im["id"] for im in images]
    sizes = np.array([[im["width"], im["height"]] for im in images], dtype=np.float64)
    fused = fuse(to_detections(members, {i: k for k, i in enumerate(ids)}, sizes), len(members), method)
    if len(fused.score) != len(ref):
        return f"{len(fused.score)} boxes, ensemble_boxes {len(ref)}"
    if [ids[i] for i in fused.image.tolist()] != [r[0] for r in ref] or fused.label.tolist() != [r[1] for r in ref]:
        return "image ids, labels or their order differ"
    box = np.abs(fused.xyxy_norm - np.array([r[2] for r in ref], dtype=np.float64).reshape(-1, 4)).max(initial=0.0)
    score = np.abs(fused.score - np.array([r[3] for r in ref], dtype=np.float64)).max(initial=0.0)
    return None if box == score == 0 else f"max |difference| box {box:.1e}, score {score:.1e}"


def bench(name, members, images, repeats, failures):
    print(f"\n== {name}: {len(members)} models x {len(images)} images, {sum(map(len, members)):,} boxes; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'':10}{'ensemble_boxes':>16}{'smallbox':>16}{'speed-up':>16}{'target':>9}   fused arrays")
    print(f"{'':10}{'wall':>8}{'cpu':>8}{'wall':>8}{'cpu':>8}{'wall':>8}{'cpu':>8}")
    inputs = per_image_inputs(members, images)
    first = images[0]["id"]
    one = [[p for p in m if p["image_id"] == first] for m in members]
    for method in METHODS:
        run_reference(inputs[:1], method)
        run_smallbox(one, images[:1], method)
        ref_times, our_times, diffs = [], [], set()
        for r in range(repeats):
            for side in (("ref", "ours") if r % 2 == 0 else ("ours", "ref")):
                if side == "ref":
                    wall, cpu, ref = run_reference(inputs, method)
                    ref_times.append((wall, cpu))
                    diffs.add(parity(members, images, method, ref))
                else:
                    our_times.append(run_smallbox(members, images, method))
        ref_wall, ref_cpu = (statistics.median(t[i] for t in ref_times) for i in (0, 1))
        our_wall, our_cpu = (statistics.median(t[i] for t in our_times) for i in (0, 1))
        target = TARGETS.get((method, name))
        diff = next((d for d in diffs if d), None)
        print(f"{method:<10}{ref_wall:7.3f}s{ref_cpu:7.3f}s{our_wall:7.3f}s{our_cpu:7.3f}s"
              f"{ref_wall / our_wall:7.1f}x{ref_cpu / our_cpu:7.1f}x{f'>= {target:g}x' if target else '':>9}   "
              f"{diff or 'identical (max |diff| 0)'}", flush=True)
        if diff:
            failures.append(f"parity {name} {method}: {diff}")
        if target and ref_cpu / our_cpu < target:
            failures.append(f"target {name} {method}: {ref_cpu / our_cpu:.1f}x CPU < {target:g}x")


COLD = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from bench_ensemble import METHODS, REFERENCE, load_bundled, per_image_inputs
members, images = load_bundled()
inputs = per_image_inputs(members, images)
times = {{}}
def timed(key, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    times[key] = (time.perf_counter() - wall, time.process_time() - cpu)
if {reference!r}:
    timed("import", lambda: __import__("ensemble_boxes"))
    import ensemble_boxes, warnings
    warnings.simplefilter("ignore")
    call = lambda method: [getattr(ensemble_boxes, REFERENCE[method])(*x[1:]) for x in inputs]
else:
    timed("import", lambda: __import__("smallbox.fusion.ensemble"))
    from smallbox.fusion.ensemble import ensemble_predictions
    call = lambda method: ensemble_predictions(members, images, method)
for method in METHODS:
    timed(method, lambda: call(method))
    timed(method + " again", lambda: call(method))
print(json.dumps(times))
"""


def cold_start():
    """First call of a fresh process, as a one-shot ``smallbox ensemble`` pays it, on 2x200:
    numba's cache empty (every kernel compiles), then filled by that run (kernels load), and
    ensemble_boxes (which imports numba and compiles its own functions in every process)."""
    print("\n== first call in a fresh process (2x200): import, then each method's first and second call")
    print(f"{'':22}{'import':>16}" + "".join(f"{m:>16}" for m in METHODS))
    print(f"{'':22}{'wall':>8}{'cpu':>8}" + f"{'1st cpu':>8}{'2nd cpu':>8}" * len(METHODS))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}  # not the repository's __pycache__
        for name, reference in (("smallbox, no cache", False), ("smallbox, cached", False),
                                ("ensemble_boxes", True)):
            code = COLD.format(bench=str(Path(__file__).parent), reference=reference)
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
            t = json.loads(out.stdout.strip().splitlines()[-1])
            cells = "".join(f"{t[m][1]:7.3f}s{t[m + ' again'][1]:7.3f}s" for m in METHODS)
            print(f"{name:<22}{t['import'][0]:7.3f}s{t['import'][1]:7.3f}s{cells}", flush=True)


def ap_table(members, images):
    from smallbox.datasets import load_coco
    from smallbox.evaluate import evaluate
    from smallbox.fusion.ensemble import ensemble_predictions

    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    names = [p.name.replace(".json.gz", "") for p in sorted((DEEPPCB / "predictions").glob("*.json.gz"))]
    print(f"\n{'DeepPCB val':<34}{'AP':>7}{'AP50':>7}{'AP_small':>10}{'AP_medium':>11}{'AP_large':>10}")
    rows = list(zip(names, members)) + [(f"{m} fusion", ensemble_predictions(members, images, m)) for m in METHODS]
    for name, preds in rows:
        r = evaluate(gt, preds)
        print(f"{name:<34}{r['AP']:7.3f}{r['AP50']:7.3f}{r['AP_small']:10.3f}{r['AP_medium']:11.3f}{r['AP_large']:10.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import ensemble_boxes  # noqa: F401  (the reference: missing, the bench fails at once)
    import numba

    print(f"numpy {np.__version__}, numba {numba.__version__}; median of {args.repeats} alternating runs")
    failures = []
    bench("4x500", *make_4x500(), args.repeats, failures)
    bundled = load_bundled()
    bench("2x200", *bundled, args.repeats, failures)
    cold_start()
    ap_table(*bundled)
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        sys.exit(1)
    print("\nall parity checks and targets met")


if __name__ == "__main__":
    main()
