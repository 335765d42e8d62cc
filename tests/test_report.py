"""``smallbox report`` over run folders written by the real trainers (tiny models, a few seconds
each): each run's chosen checkpoint scored on a report split that neither trained nor picked it
(numbers checked with pycocotools on the predictions it made), a report split that overlaps the
picking json refused, seeds grouped (mean ± std checked with the statistics module), each group
tested against the baseline with the calibrated test, evaluation settings stated, an Ultralytics
val folder skipped, without a report split the last epoch and no test, a plain Ultralytics run,
older relative paths, and bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from yolo_helpers import TINY_MODEL, no_network, pycocotools_stats

from smallbox.analysis.report import build_report, load_run
from smallbox.analysis.significance import A_BETTER, B_BETTER, NO_DIFFERENCE
from smallbox.cli import main
from smallbox.runfolder import MISSING

TRAIN = ["epochs=2", "imgsz=96", "batch=4", "device=cpu", "workers=0", "plots=False", "exist_ok=True"]


def train(data, project, name, *extra):
    with no_network():
        rc = main(["yolo", "train", f"model={TINY_MODEL}", f"data={data}", f"project={project}", f"name={name}", *TRAIN, *extra])
    assert rc == 0
    return project / name


@pytest.fixture(scope="module")
def runs(tiny_yolo_run, tiny_tv_run, tmp_path_factory):
    """runs/yolo: the session's YOLO run (seed 0) and a second seed of it, a small-box specialist
    (data-small.yaml) with two seeds, the same recipe without mosaic, and a `smallbox yolo val`
    folder; runs/tv: the session's torchvision run."""
    root = tmp_path_factory.mktemp("report-runs")
    yolo = root / "yolo"
    shutil.copytree(tiny_yolo_run["dir"], yolo / "full-s0")
    data, small = tiny_yolo_run["data"], tiny_yolo_run["dataset"] / "data-small.yaml"
    out = {"full": [yolo / "full-s0", train(data, yolo, "full-s1", "seed=1")],
           "small": [train(small, yolo, "small-s0", "seed=0"), train(small, yolo, "small-s1", "seed=1")],
           "nomosaic": train(data, yolo, "nomosaic-s0", "seed=0", "mosaic=0.0")}
    with no_network():
        assert main(["yolo", "val", f"model={tiny_yolo_run['weights']}", f"data={data}", "imgsz=96", "batch=4",
                     "device=cpu", f"project={yolo}", "name=val", "exist_ok=True"]) == 0
    out["val"] = yolo / "val"
    shutil.copytree(tiny_tv_run["dir"], root / "tv" / "tv-tiny")
    out["tv"] = root / "tv" / "tv-tiny"
    out["root"], out["dataset"] = root, tiny_yolo_run["dataset"]
    return out


def results_rows(folder):
    with open(folder / "results.csv", newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def assert_verdict_follows_interval(result):
    lo, hi = result.interval
    if not result.runs_counted:
        assert result.verdict.startswith("cannot tell")
    else:
        assert result.verdict == (B_BETTER if lo > 0 else A_BETTER if hi < 0 else NO_DIFFERENCE)


@pytest.fixture(scope="module")
def report_split(tmp_path_factory):
    """Four more DeepPCB val images made odd the same way: images no run trained on or picked by."""
    from odd_data import make_odd_deeppcb
    from yolo_helpers import DEEPPCB

    root = tmp_path_factory.mktemp("report-split")
    return {"json": make_odd_deeppcb(DEEPPCB / "annotations" / "val.json", DEEPPCB / "images", root, 4, offset=4),
            "images": root / "images"}


@pytest.fixture(scope="module")
def report(runs, report_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.md"
    folders = sorted((runs["root"] / "yolo").iterdir()) + [runs["tv"]]
    rep = build_report(folders, out, out.with_suffix(".csv"), metric="coco/AP_small", n=50,
                       baseline="full-s0", report_split=report_split["json"], images=report_split["images"])
    return rep, out


def test_each_run_is_its_checkpoint_on_the_report_split(runs, report, report_split):
    rep, out = report
    labels = [g.label for g in rep["groups"]]
    assert labels[0] == "full-s0, full-s1"  # --baseline's group leads
    assert sorted(labels[1:]) == ["nomosaic-s0", "small-s0, small-s1", "tv-tiny"]
    assert rep["notes"][0] == f"skipped {runs['val']}: not a training run (no results.csv: a val or predict folder?)"
    assert rep["notes"][1].startswith("the paths ran at other input sizes (yolo at 96 px, tv at 128 px)")
    assert len(rep["notes"]) == 2
    md = out.read_text()
    assert f"skipped {runs['val']}" in md
    assert "report split val-odd.json, which neither trained nor picked any of them" in md
    assert "picked on val-odd.json, val-small.json" in md
    report_ids = {im["id"] for im in json.loads(report_split["json"].read_text())["images"]}
    for group in rep["groups"]:
        values = {"coco/AP": [], "coco/AP_small": []}
        for r in group.runs:
            preds = json.loads(r.predictions.read_text())
            assert {p["image_id"] for p in preds} <= report_ids and r.predictions != r.folder / "predictions.json"
            stats = pycocotools_stats(report_split["json"], preds)
            values["coco/AP"].append(float(stats[0]))
            values["coco/AP_small"].append(float(stats[3]))
            best = json.loads((r.folder / "smallbox.json").read_text())["best"]["epoch"]
            assert r.epoch == best and isinstance(best, int)  # the epoch best.pt holds, as the run recorded it
        for column, v in values.items():
            v = [x for x in v if x >= 0]
            mean, std, n = group.mean_std(column)
            assert (mean, n) == (pytest.approx(statistics.fmean(v), abs=1e-9), len(v))
            assert std == pytest.approx(statistics.stdev(v)) if len(v) > 1 else np.isnan(std)
    assert "| settings |" in md and "mosaic=0.0" in md  # same model, another recipe: its own group
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert rows[0]["seeds"] == "0, 1" and rows[0]["coco/AP_small n"] == "2"


def test_evaluation_settings_and_the_one_ground_truth_are_stated(runs, report):
    rep, out = report
    md = out.read_text()
    section = md.split("## Evaluation settings and ground truth", 1)[1].split("## Is the difference real?")[0]
    assert "conf=0.001, iou=0.7, max_det=300, imgsz=96" in section  # YOLO's validator, predict used the same
    assert "score_thresh=0.001, nms_thresh=0.5, detections_per_img=300" in section  # torchvision's
    assert "**The groups were evaluated with different settings**" in section
    assert "val-odd.json (4 images" in section and "different ground truths" not in section
    tv = {c.b.label: c for c in rep["comparisons"]}["tv-tiny"]
    assert tv.result is not None and tv.result.verdict == "cannot tell: one run on side B"


def test_a_report_split_that_picked_or_trained_is_refused(runs, tmp_path, capsys):
    yolo = [str(runs["full"][0])]
    val = runs["dataset"] / "annotations" / "val.json"
    assert main(["report", *yolo, "--report-split", str(val), "--images", str(runs["dataset"]), "--out",
                 str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert "shares 4 image(s)" in err and "picked the checkpoint of full-s0" in err and not (tmp_path / "r.md").exists()
    train = runs["dataset"] / "annotations" / "train.json"
    assert main(["report", *yolo, "--report-split", str(train), "--images", str(runs["dataset"]), "--out",
                 str(tmp_path / "r.md")]) == 2
    assert "which trained full-s0" in capsys.readouterr().err


def test_without_a_report_split_the_last_epoch_and_no_test(runs, tmp_path):
    rep = build_report([*runs["full"], runs["nomosaic"]], tmp_path / "r.md", metric="coco/AP_small", n=20)
    for g in rep["groups"]:
        for r in g.runs:
            assert r.metrics["coco/AP"] == results_rows(r.folder)[-1]["coco/AP"] and r.epoch == 2
    assert rep["comparisons"] == [] and "Not tested" in rep["markdown"] and "last epoch" in rep["markdown"]


def test_never_a_win_the_interval_does_not_support(report):
    rep, out = report
    md = out.read_text()
    assert len(rep["comparisons"]) == 3
    for c in rep["comparisons"]:
        assert c.result is not None, c.skipped
        assert_verdict_follows_interval(c.result)
        assert c.result.verdict in md
    assert "Welch t over runs + paired image bootstrap" in md
    for png in ("report_ap_by_size.png", "report_pr_by_size.png"):
        img = np.asarray(Image.open(out.parent / png).convert("L"))
        assert img.shape[0] > 200 and img.std() > 10, png
        assert png in md


def test_older_run_with_relative_paths_and_no_val(runs, tmp_path, monkeypatch):
    """smallbox.json of older runs: no `val`, a relative `data`, read from another folder. Rewritten
    here as an older trainer wrote it; the ground truth is found from the run folder: the full val
    json for data.yaml, the per-area one for data-small.yaml."""
    project = tmp_path / "project"
    shutil.copytree(runs["dataset"], project / "data", symlinks=True)
    for name, source, yaml_name in (("old-full", runs["full"][0], "data.yaml"), ("old-small", runs["small"][0], "data-small.yaml")):
        folder = project / "runs" / name
        shutil.copytree(source, folder)
        info = json.loads((folder / "smallbox.json").read_text())
        info.update(val=None, data=f"../../data/{yaml_name}")
        (folder / "smallbox.json").write_text(json.dumps(info))
        for yaml_path in (project / "data").glob("data*.yaml"):  # the copied dataset's own path
            yaml_path.write_text(yaml_path.read_text().replace(str(runs["dataset"]), str(project / "data")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rep = build_report([project / "runs" / "old-full", project / "runs" / "old-small"], tmp_path / "r.md",
                       metric="coco/AP_small", n=20)
    md = rep["markdown"]
    assert "annotations/val.json" in md.replace("\\", "/") or "val.json (4 images" in md
    assert "val-small.json (4 images" in md  # each found from its run folder


def test_plain_ultralytics_run_uses_args_yaml_and_their_map(runs, tmp_path):
    """A run of the stock `yolo` CLI: no smallbox.json, no COCO columns; Ultralytics' own mAP
    stands in, marked."""
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", HF_HUB_OFFLINE="1")
    yolo = os.path.join(os.path.dirname(sys.executable), "yolo")
    proc = subprocess.run([yolo, "train", f"model={TINY_MODEL}", f"data={runs['dataset'] / 'data.yaml'}", *TRAIN, "seed=7",
                           f"project={tmp_path}", "name=plain"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = load_run(tmp_path / "plain")
    assert not (tmp_path / "plain" / "smallbox.json").exists()
    assert (r.info["model"], r.info["imgsz"], r.info["seed"]) == ("yolo-tiny", 96, 7)
    assert r.fallback == {"coco/AP", "coco/AP50"}
    md = build_report([tmp_path / "plain"], tmp_path / "u.md")["markdown"]
    assert "†" in md and "Ultralytics' own mAP" in md and "not recorded" in md


def test_cli_report_and_bad_input(runs, tmp_path, capsys):
    yolo = sorted(str(p) for p in (runs["root"] / "yolo").iterdir())
    rc = main(["report", *yolo, "--out", str(tmp_path / "r.md"), "--n", "20", "--no-significance"])
    text = capsys.readouterr().out
    assert rc == 0 and f"skipped {runs['val']}" in text and "wrote" in text
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "nope: no such run folder" in capsys.readouterr().err
    assert main(["report", str(runs["val"]), "--out", str(tmp_path / "v.md")]) == 2
    assert "no training run folder" in capsys.readouterr().err
    assert main(["report", *yolo, "--metric", "coco/APx", "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert "coco/APx" in err and "results.csv" in err and "Traceback" not in err and not (tmp_path / "x.md").exists()
    assert main(["report", *yolo, "--baseline", "nosuchrun", "--out", str(tmp_path / "b.md")]) == 2
    assert "--baseline nosuchrun: no such run" in capsys.readouterr().err
    assert main(["report", *yolo, "--ledger", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["report"]) == 2
    assert "run folders" in capsys.readouterr().err
