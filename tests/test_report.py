"""``smallbox report`` over hand-written run folders of both paths: best epoch, seed grouping
(mean ± std checked with the statistics module), CSV, plots, and the significance column."""

import csv
import gzip
import json
import statistics

import numpy as np
import pytest
from PIL import Image

from smallbox.cli import main
from smallbox.analysis.report import build_report, load_run

COLUMNS = ["coco/AP", "coco/AP50", "coco/AP75", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "coco/AR_100",
           "fit/AP_small", "fit/AP_medium", "fit/AP_large"]
FIT = {"name": "fit", "thresholds": [1024.0, 1444.0]}


def write_run(folder, path, model, seed, epochs_metrics, predictions=None, backbone="-", ultralytics=False):
    """A run folder as the trainers write it: results.csv (one row per epoch) + smallbox.json."""
    folder.mkdir(parents=True)
    header = ["epoch", "train/box_loss"] + COLUMNS
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"  {h}" if ultralytics else h for h in header])
        for e, m in enumerate(epochs_metrics, start=1):
            w.writerow([e, 1.0 / e] + [m.get(c, 0.1 * e) for c in COLUMNS])
    info = {"path": path, "model": model, "backbone": backbone, "imgsz": 640, "epochs": len(epochs_metrics),
            "seed": seed, "data": "data.yaml", "buckets": [{"name": "coco", "thresholds": [1024.0, 9216.0]}, FIT]}
    if predictions is not None:
        (folder / "predictions.json").write_text(json.dumps(predictions))
        info["predictions"] = "predictions.json"
    (folder / "smallbox.json").write_text(json.dumps(info))
    return folder


def read_preds(path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


def jitter_scores(preds, seed):
    rng = np.random.default_rng(seed)
    return [{**p, "score": float(np.clip(p["score"] * rng.uniform(0.9, 1.1), 0, 1))} for p in preds]


@pytest.fixture(scope="module")
def val50(deeppcb_val, tmp_path_factory):
    """The first 50 images of the DeepPCB val split: keeps the bootstrap in the tests short."""
    data = json.loads(deeppcb_val.read_text())
    keep = {im["id"] for im in data["images"][:50]}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    path = tmp_path_factory.mktemp("gt") / "val50.json"
    path.write_text(json.dumps(data))
    return path, keep


@pytest.fixture(scope="module")
def runs(tmp_path_factory, deeppcb_predictions, val50):
    root = tmp_path_factory.mktemp("runs")
    n_preds, s_preds = ([p for p in read_preds(f) if p["image_id"] in val50[1]] for f in deeppcb_predictions)
    # epoch 2 is the best by coco/AP in every run; coco/AP_small peaks elsewhere in run n_s0
    yolo_n = [
        write_run(root / "n_s0", "yolo", "yolov8n", 0, [{"coco/AP": 0.50, "coco/AP_small": 0.40}, {"coco/AP": 0.60, "coco/AP_small": 0.30, "coco/AP50": 0.91, "fit/AP_small": 0.20}, {"coco/AP": 0.55, "coco/AP_small": 0.10}], n_preds, ultralytics=True),
        write_run(root / "n_s1", "yolo", "yolov8n", 1, [{"coco/AP": 0.52}, {"coco/AP": 0.64, "coco/AP_small": 0.36, "coco/AP50": 0.95, "fit/AP_small": 0.26}, {"coco/AP": 0.61}], jitter_scores(n_preds, 1), ultralytics=True),
    ]
    tv = [write_run(root / "tv_s0", "tv", "fasterrcnn", 0, [{"coco/AP": 0.3}, {"coco/AP": 0.45, "coco/AP_small": 0.25}], s_preds, backbone="swin_t"),
          write_run(root / "tv_s1", "tv", "fasterrcnn", 1, [{"coco/AP": 0.2}, {"coco/AP": 0.41, "coco/AP_small": 0.21}], jitter_scores(s_preds, 2), backbone="swin_t")]
    return yolo_n, tv


def test_best_epoch_by_chosen_metric(runs):
    assert load_run(runs[0][0], "coco/AP").epoch == 2
    assert load_run(runs[0][0], "coco/AP_small").epoch == 1
    assert load_run(runs[0][0], "coco/AP", epoch="last").epoch == 3


def test_table_groups_seeds_into_mean_std(runs, tmp_path, val50):
    yolo_n, tv = runs
    out = tmp_path / "r" / "report.md"
    rep = build_report(yolo_n + tv, out, tmp_path / "r" / "report.csv", metric="coco/AP", gt=val50[0], n=100)
    assert [len(g.runs) for g in rep["groups"]] == [2, 2]
    md = out.read_text()
    ap = [0.60, 0.64]
    small = [0.30, 0.36]
    assert f"{statistics.fmean(ap):.3f} ± {statistics.stdev(ap):.3f} (2)" in md
    assert f"{statistics.fmean(small):.3f} ± {statistics.stdev(small):.3f} (2)" in md
    assert f"{statistics.fmean([0.20, 0.26]):.3f} ± {statistics.stdev([0.20, 0.26]):.3f} (2)" in md  # fitted ranges
    assert "best epoch by `coco/AP`" in md
    rows = list(csv.DictReader(open(tmp_path / "r" / "report.csv")))
    assert rows[0]["model"] == "yolov8n" and rows[1]["backbone"] == "swin_t" and rows[0]["seeds"] == "0, 1"
    assert float(rows[1]["coco/AP"]) == pytest.approx(statistics.fmean([0.45, 0.41]))
    assert float(rows[1]["coco/AP std"]) == pytest.approx(statistics.stdev([0.45, 0.41]))
    # two groups with predictions: the bootstrap verdict is in the report
    (cmp,) = rep["comparisons"]
    assert cmp.result is not None and cmp.result.verdict in md
    assert len(cmp.result.a_values) == 2 and len(cmp.result.b_values) == 2
    for png in ("report_ap_by_size.png", "report_pr_by_size.png"):
        img = np.asarray(Image.open(out.parent / png).convert("L"))
        assert img.shape[0] > 200 and img.std() > 10, png
        assert png in md


def test_cli_report_single_runs_and_errors(runs, tmp_path, capsys, val50):
    yolo_n, tv = runs
    rc = main(["report", str(yolo_n[0]), str(tv[0]), "--out", str(tmp_path / "one.md"), "--gt", str(val50[0]), "--n", "50",
               "--metric", "coco/AP_small"])
    text = capsys.readouterr().out
    assert rc == 0 and "cannot tell: one run per side" in text
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["report", str(yolo_n[0]), "--metric", "coco/APx", "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert "coco/APx" in err and "results.csv" in err and not (tmp_path / "x.md").exists()


def test_plain_ultralytics_run_uses_args_yaml_and_their_map(tmp_path):
    """A run of the stock `yolo` CLI: no smallbox.json, no COCO columns."""
    run = tmp_path / "train3"
    run.mkdir()
    (run / "args.yaml").write_text("task: detect\nmodel: /w/yolov8s.pt\ndata: coco8.yaml\nepochs: 2\nimgsz: 320\nseed: 7\n")
    (run / "results.csv").write_text("                  epoch,  metrics/mAP50(B),  metrics/mAP50-95(B)\n"
                                     "                      1,           0.41,            0.21\n"
                                     "                      2,           0.52,            0.33\n")
    r = load_run(run)
    assert (r.info["model"], r.info["imgsz"], r.info["seed"], r.epoch) == ("yolov8s", 320, 7, 2)
    assert r.metrics["coco/AP"] == 0.33 and r.fallback == {"coco/AP", "coco/AP50"}
    md = build_report([run], tmp_path / "u.md")["markdown"]
    assert "0.520†" in md and "0.330†" in md and "Ultralytics' own mAP" in md


def test_undefined_metric_is_left_out_and_ambiguous_names_get_their_parent(tmp_path):
    """-1 in results.csv means "no ground truth in that range" (pycocotools), not a value."""
    a = write_run(tmp_path / "x" / "run", "tv", "fasterrcnn", 0, [{"coco/AP_large": -1.0, "coco/AP": 0.5}])
    b = write_run(tmp_path / "y" / "run", "tv", "fasterrcnn", 1, [{"coco/AP_large": 0.4, "coco/AP": 0.6}])
    rep = build_report([a, b], tmp_path / "r.md", significance=False)
    (group,) = rep["groups"]
    assert group.mean_std("coco/AP_large")[::2] == (0.4, 1)
    assert "x/run, y/run" in rep["markdown"] and "0.400 |" in rep["markdown"]


def test_recipe_settings_split_groups_and_show(tmp_path):
    """Same model and size but another recipe (here mosaic) is another experiment, not a seed."""
    def run(name, seed, mosaic):
        folder = write_run(tmp_path / name, "yolo", "yolov8n", seed, [{"coco/AP": 0.5 + seed / 100}])
        (folder / "args.yaml").write_text(f"model: yolov8n.yaml\nepochs: 1\nimgsz: 640\nseed: {seed}\nname: {name}\n"
                                          f"mosaic: {mosaic}\nlr0: 0.01\n")
        return folder

    rep = build_report([run("m1_s0", 0, 1.0), run("m1_s1", 1, 1.0), run("m0_s0", 0, 0.0)], tmp_path / "r.md",
                       significance=False)
    assert [[r.name for r in g.runs] for g in rep["groups"]] == [["m1_s0", "m1_s1"], ["m0_s0"]]
    md = rep["markdown"]
    assert "| settings |" in md and "mosaic=1.0" in md and "mosaic=0.0" in md and "lr0=" not in md


def test_ground_truth_found_through_the_converted_data_yaml(tmp_path, val50, deeppcb_predictions):
    """YOLO runs name their data.yaml; its manifest leads to the val json, so the groups are
    compared without --gt."""
    ds = tmp_path / "ds"
    (ds / "annotations").mkdir(parents=True)
    (ds / "annotations" / "val.json").write_text(val50[0].read_text())
    (ds / "manifest.json").write_text(json.dumps({"version": 1, "classes": [], "splits": {}}))
    (ds / "data.yaml").write_text(f"path: {ds}\ntrain: images/train\nval: images/val\n"
                                  "smallbox:\n  manifest: manifest.json\n  coco: {val: annotations/val.json}\n")
    runs = []
    for i, f in enumerate(deeppcb_predictions):
        preds = [p for p in read_preds(f) if p["image_id"] in val50[1]]
        runs.append(write_run(tmp_path / f"r{i}", "yolo", f"m{i}", 0, [{"coco/AP": 0.5}], preds))
        info = json.loads((runs[-1] / "smallbox.json").read_text())
        (runs[-1] / "smallbox.json").write_text(json.dumps({**info, "data": str(ds / "data.yaml")}))
    rep = build_report(runs, tmp_path / "r.md", n=20)
    (cmp,) = rep["comparisons"]
    assert cmp.result is not None and cmp.result.verdict == "cannot tell: one run per side"
