"""The evaluation protocols of tiny-object work, against their reference evaluators on real
predictions: five size ranges and 1,500 detections per image equal pycocotools configured with
the same ``areaRng`` and ``maxDets``; ``--areas aitod`` equals the AI-TOD evaluator
(faster-coco-eval-aitod, the AI-TOD cocoapi's numbers) on DeepPCB shrunk fourfold so that its
boxes are very tiny to small; dense mosaics (over 100 true boxes an image) show the 100-detection
cut and its message; ``eval --json`` carries names, ranges, AP and AR lists and max_dets."""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json

import numpy as np
import pytest
from yolo_helpers import DEEPPCB

from smallbox.cli import main
from smallbox.datasets import SizeBuckets
from smallbox.evaluate import evaluate

PREDS = sorted((DEEPPCB / "predictions").glob("*.json.gz"))


def load(path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


def val():
    return json.loads((DEEPPCB / "annotations" / "val.json").read_text())


def scaled(data: dict, preds: list, factor: float):
    """The ground truth and predictions of images shrunk by ``factor`` (boxes and sizes)."""
    gt = copy.deepcopy(data)
    for im in gt["images"]:
        im["width"], im["height"] = im["width"] / factor, im["height"] / factor
    for a in gt["annotations"]:
        a["bbox"] = [v / factor for v in a["bbox"]]
        a["area"] = a["bbox"][2] * a["bbox"][3]
    return gt, [{**p, "bbox": [v / factor for v in p["bbox"]]} for p in preds]


def mosaic(data: dict, preds: list, side: int):
    """``side`` x ``side`` mosaics of the 640 px images (ids and boxes shifted): dense images."""
    images, anns, out = [], [], []
    by_image = {im["id"]: k for k, im in enumerate(data["images"])}
    n = side * side
    for m in range(len(data["images"]) // n):
        images.append({"id": 10_000 + m, "file_name": f"m{m}.png", "width": 640 * side, "height": 640 * side})
    for a in data["annotations"]:
        k = by_image[a["image_id"]]
        if k // n < len(images):
            dx, dy = 640 * (k % n % side), 640 * (k % n // side)
            anns.append({**a, "id": len(anns) + 1, "image_id": 10_000 + k // n,
                         "bbox": [a["bbox"][0] + dx, a["bbox"][1] + dy, *a["bbox"][2:]]})
    for p in preds:
        k = by_image[p["image_id"]]
        if k // n < len(images):
            dx, dy = 640 * (k % n % side), 640 * (k % n // side)
            out.append({**p, "image_id": 10_000 + k // n, "bbox": [p["bbox"][0] + dx, p["bbox"][1] + dy, *p["bbox"][2:]]})
    return {**data, "images": images, "annotations": anns}, out


def pycocotools_eval(gt: dict, preds: list, area_rng, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(preds)), "bbox")
        ev.params.areaRng = area_rng
        ev.params.areaRngLbl = [f"r{i}" for i in range(len(area_rng))]
        ev.params.maxDets = max_dets
        ev.evaluate()
        ev.accumulate()
    p, r = ev.eval["precision"], ev.eval["recall"]

    def mean(x):
        return float(x[x > -1].mean()) if (x > -1).any() else -1.0

    return ([mean(p[:, :, :, a, -1]) for a in range(len(area_rng))], [mean(r[:, :, a, -1]) for a in range(len(area_rng))])


def test_five_ranges_and_1500_detections_equal_pycocotools():
    gt, preds = mosaic(val(), load(PREDS[0]), 4)  # 16 images a mosaic: dense
    five = SizeBuckets.parse("8^2,16^2,32^2,64^2")
    ours = evaluate(gt, preds, five, max_dets=1500)
    ranges = [[0, 1e10]] + [[lo, hi] for _, lo, hi in five.ranges()]
    ap, ar = pycocotools_eval(gt, preds, ranges, [1, 10, 100, 1500])
    assert ours["AP"] == pytest.approx(ap[0], abs=1e-12)
    assert ours["buckets"]["custom"]["AP"] == pytest.approx(ap[1:], abs=1e-12)
    assert ours["buckets"]["custom"]["AR"] == pytest.approx(ar[1:], abs=1e-12)
    assert ours["AR_1500"] == pytest.approx(ar[0], abs=1e-12) and ours["max_dets"] == 1500
    assert ours["buckets"]["custom"]["names"] == list(five.names)


def test_aitod_equals_the_aitod_evaluator():
    from faster_coco_eval_aitod import COCO, COCOeval_faster

    gt, preds = scaled(val(), load(PREDS[1]), 4.0)  # 22-130 px boxes -> 5-32 px: very tiny to small
    ours = evaluate(gt, preds, SizeBuckets.parse("aitod"), max_dets=1500)
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    ev = COCOeval_faster(coco, coco.loadRes(copy.deepcopy(preds)), "bbox", print_function=lambda *a, **k: None)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.all_stats  # stats holds the first 12 only
    a = ours["buckets"]["aitod"]
    assert a["names"] == ["verytiny", "tiny", "small", "medium"]
    assert min(a["AP"]) >= 0  # every range holds boxes: the comparison means something
    got = [ours["AP"], ours["AP50"], ours["AP75"], *a["AP"], ours["AR_1"], ours["AR_100"], ours["AR_1500"], *a["AR"]]
    want = [s[0], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13], s[14]]
    assert got == pytest.approx(list(want), abs=1e-6)


def test_dense_images_show_the_cut_and_say_so(tmp_path, capsys):
    gt, preds = mosaic(val(), load(PREDS[0]), 5)  # 25 images a mosaic
    counts = np.bincount([a["image_id"] - 10_000 for a in gt["annotations"]])
    assert counts.max() > 100  # more true boxes than COCO's detection limit on an image
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "preds.json"), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    cut = json.loads((tmp_path / "m.json").read_text())["cut"]
    per = {}
    for p in preds:
        per[p["image_id"], p["category_id"]] = per.get((p["image_id"], p["category_id"]), 0) + 1
    assert cut["boxes"] == sum(n - 100 for n in per.values() if n > 100) > 0
    assert cut["images"] == len({image for (image, _), n in per.items() if n > 100})
    assert f"{cut['images']} image(s) hold more than 100 detections of one class" in out and "--max-dets" in out
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "preds.json"), "--max-dets", "1500", "--json",
                 str(tmp_path / "m1500.json")]) == 0
    more = json.loads((tmp_path / "m1500.json").read_text())
    assert more["cut"]["boxes"] == 0 and more["AP"] > json.loads((tmp_path / "m.json").read_text())["AP"]
    assert "more than" not in capsys.readouterr().out
    top = max(per.values())  # a limit that the densest image's class meets exactly: nothing is cut
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "preds.json"), "--max-dets", str(top), "--json",
                 str(tmp_path / "mtop.json")]) == 0
    assert json.loads((tmp_path / "mtop.json").read_text())["cut"] == {"images": 0, "boxes": 0}


def test_eval_json_carries_each_sets_names_ranges_and_lists(tmp_path):
    assert main(["eval", str(DEEPPCB / "annotations" / "val.json"), str(PREDS[0]), "--areas", "aitod", "--json",
                 str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["max_dets"] == 1500  # the preset's
    a = m["buckets"]["aitod"]
    assert a["names"] == ["verytiny", "tiny", "small", "medium"] and a["ranges"][1] == [64.0, 256.0]
    assert a["AP"] == [a[f"AP_{n}"] for n in a["names"]] and len(a["AR"]) == 4
    assert m["buckets"]["coco"]["names"] == ["small", "medium", "large"] and "AP_small" in m
