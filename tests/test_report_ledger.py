"""``smallbox report --ledger`` on a ledger written by the real runner (`smallbox experiments run`,
tiny models at 96 px on a few bundled DeepPCB images, about a minute): one row per arm with
mean ± std over seeds, the specialist's WBF row, the calibrated test against the matrix's
baseline, the evaluation settings, plots, a headline line, and entries of another scale in the
same matrix folder kept apart."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from yolo_helpers import subset_json

from smallbox.analysis.ledger_report import build_ledger_report
from smallbox.analysis.significance import A_BETTER, B_BETTER, NO_DIFFERENCE
from smallbox.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
MODEL = ROOT / "recipes" / "models" / "yolo-tiny.yaml"


def matrix_text(scale: str, seeds: str, arms: str) -> str:
    return f"""name: tiny
scale: {scale}
data: {{train: train8.json, select: sel4.json, report: val6.json, images: {DEEPPCB / 'images'}, splits: ["small:0:32^2"]}}
seeds: {seeds}
baseline: base
defaults: {{epochs: 2, imgsz: 96, batch: 4, workers: 0}}
arms:
{arms}"""


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """tiny.yaml (cpu scale): base and a small-box specialist fused with base, seeds 0 and 1; then
    the same matrix marked gpu scale (gpu/tiny.yaml) for base seed 2, into the same ledger."""
    folder = tmp_path_factory.mktemp("ledger-report")
    for name, n, out in (("train-699.json", 8, "train8.json"), ("select-101.json", 4, "sel4.json"), ("val.json", 6, "val6.json")):
        subset_json(DEEPPCB / "annotations" / name, n, folder / out)
    arms = f"  base: {{model: {MODEL}, estimate_minutes: 0.5}}\n  spec: {{model: {MODEL}, split: small, fuse_with: base}}\n"
    (folder / "tiny.yaml").write_text(matrix_text("cpu", "[0, 1]", arms))
    (folder / "gpu").mkdir()
    (folder / "gpu" / "tiny.yaml").write_text(matrix_text("gpu", "[2]", f"  base: {{model: {MODEL}}}\n")
                                              .replace("train8.json", "../train8.json").replace("sel4.json", "../sel4.json")
                                              .replace("val6.json", "../val6.json"))
    cwd = os.getcwd()
    try:
        for where, matrix in ((folder, "tiny.yaml"), (folder / "gpu", "tiny.yaml")):
            os.chdir(where)
            assert main(["experiments", "run", matrix, "--device", "cpu", "--ledger", str(folder / "ledger"),
                         "--work", str(folder / "work")]) == 0
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture(scope="module")
def page(ledger):
    out = ledger / "docs" / "results.md"
    cwd = os.getcwd()
    try:
        os.chdir(ledger / "gpu")  # anywhere: the baseline comes from the matrix file beside the ledger
        assert main(["report", "--ledger", str(ledger / "ledger"), "--out", str(out), "--csv", str(out.with_suffix(".csv")),
                     "--n", "50"]) == 0
    finally:
        os.chdir(cwd)
    rep = build_ledger_report(ledger / "ledger", ledger / "again.md", n=50)
    return rep, out


def entries(ledger, arm):
    return [json.loads(p.read_text()) for p in sorted((ledger / "ledger" / "tiny" / arm).glob("seed*/entry.json"))]


def test_scales_are_never_pooled(ledger, page):
    rep, out = page
    assert [(s.matrix, s.scale) for s in rep["sections"]] == [("tiny", "cpu"), ("tiny", "gpu")]
    cpu, gpu = rep["sections"]
    assert [r.label for r in cpu.rows] == ["base", "spec", "spec + WBF with base"]
    assert [e.seed for e in cpu.rows[0].entries] == [0, 1] and [e.seed for e in gpu.rows[0].entries] == [2]
    md = out.read_text()
    assert "## tiny — cpu scale" in md and "## tiny — gpu scale" in md
    assert "only the baseline, base, is in the ledger" in rep["headlines"][1]


def test_rows_are_mean_std_over_seeds_of_the_entries(ledger, page):
    rep, out = page
    cpu = rep["sections"][0]
    for row, arm, key in ((cpu.rows[0], "base", "metrics"), (cpu.rows[1], "spec", "metrics"), (cpu.rows[2], "spec", "fused")):
        es = [e for e in entries(ledger, arm) if e["scale"] == "cpu"]
        for column, value in (("AP", lambda m: m["AP"]), ("coco/AP_small", lambda m: m["AP_small"]),
                              ("fit/AP_small", lambda m: m["buckets"]["fit"]["AP_small"])):
            values = [value(e[key]) for e in es]
            mean, std, n = row.mean_std(column)
            assert (mean, std, n) == (pytest.approx(statistics.fmean(values)), pytest.approx(statistics.stdev(values)), 2)
    md = out.read_text()
    assert "Baseline: `base` (baseline: of" in md and "tiny.yaml" in md
    assert ("Evaluation settings (predict): conf=0.001, iou=0.7, max_det=100, imgsz=96 for every arm; besides: "
            "spec + WBF with base: fused=wbf." in md)
    assert "Data: trained on train8.json; each checkpoint picked on sel4.json" in md and "scored on the report split val6.json" in md
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [(r["scale"], r["arm"], r["seeds"]) for r in rows] == [("cpu", "base", "0 1"), ("cpu", "spec", "0 1"),
                                                                   ("cpu", "spec + WBF with base", "0 1"), ("gpu", "base", "2")]


def test_every_arm_is_tested_against_the_baseline_and_the_headline_quotes_it(ledger, page):
    rep, out = page
    cpu = rep["sections"][0]
    base_values = [e["metrics"]["AP_small"] for e in entries(ledger, "base") if e["scale"] == "cpu"]
    for row in cpu.rows[1:]:
        res = row.result
        assert res is not None, row.skipped
        assert res.a_values == pytest.approx(base_values, abs=1e-6)  # the entries were scored by smallbox eval
        lo, hi = res.interval
        assert res.verdict == (B_BETTER if lo > 0 else A_BETTER if hi < 0 else NO_DIFFERENCE)
    # Holm over the two arms, by hand: the smaller p doubled, the larger kept (never below the first)
    p = sorted(r.result.p_value for r in cpu.rows[1:])
    holm = [min(1, 2 * p[0]), max(min(1, 2 * p[0]), p[1])]
    assert sorted(r.p_holm for r in cpu.rows[1:]) == pytest.approx(holm)
    for row in cpu.rows[1:]:
        d = row.result.difference
        assert row.verdict == (NO_DIFFERENCE if row.p_holm >= 0.05 else B_BETTER if d > 0 else A_BETTER)
    assert "not independent" in cpu.rows[2].note
    headline = rep["headlines"][0]
    assert headline.startswith("**tiny (cpu scale):** best AP_small: spec")
    assert "against the baseline base" in headline and "(2 vs 2 seeds, Holm-corrected p" in headline
    md = out.read_text()
    assert headline in md and "### Against the baseline (coco/AP_small, calibrated test, Holm-corrected over the arms)" in md
    assert "## The answer" in md and "2 arms tested at a family-wise 95% level (Holm)" in md
    for section in rep["sections"]:
        png = out.parent / f"results_{section.key}_ap_by_size.png"
        img = np.asarray(Image.open(png).convert("L"))
        assert img.shape[0] > 200 and img.std() > 5 and png.name in md


def test_bad_ledger_input_is_a_clean_error(ledger, tmp_path, capsys):
    assert main(["report", "--ledger", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "no whole ledger entries" in capsys.readouterr().err
    assert main(["report", "--ledger", str(ledger / "ledger"), "--baseline", "nosuch", "--out", str(tmp_path / "r.md")]) == 2
    assert "baseline 'nosuch'" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text((ledger / "tiny.yaml").read_text().replace("name: tiny", "name: other"))
    assert main(["report", "--ledger", str(ledger / "ledger"), "--matrix", str(other), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert "it is matrix 'other'" in err and "Traceback" not in err and not (tmp_path / "r.md").exists()


def test_a_moved_checkout_still_finds_the_report_json_and_a_changed_one_is_named(ledger, tmp_path):
    """Entries record the report json relative to themselves, with its hash: a ledger copied with
    its data (a clone elsewhere) is tested as before; a report json edited since is named, not used."""
    moved = tmp_path / "clone"
    shutil.copytree(ledger / "ledger", moved / "ledger")
    for name in ("train8.json", "sel4.json", "val6.json", "tiny.yaml"):
        shutil.copy2(ledger / name, moved / name)
    recorded = entries(ledger, "base")[0]["data"]["report"]
    assert not os.path.isabs(recorded["path"]) and len(recorded["sha1"]) == 40
    rep = build_ledger_report(moved / "ledger", moved / "results.md", n=50)
    cpu = rep["sections"][0]
    assert cpu.scale == "cpu" and all(row.result is not None for row in cpu.rows[1:])

    gt = json.loads((moved / "val6.json").read_text())
    gt["annotations"] = gt["annotations"][1:]
    (moved / "val6.json").write_text(json.dumps(gt))
    rep = build_ledger_report(moved / "ledger", moved / "results.md", n=50)
    cpu = rep["sections"][0]
    assert all(row.result is None and "differs from the report json" in row.skipped for row in cpu.rows[1:])


def test_the_committed_results_page_regenerates_byte_identically(tmp_path):
    """docs/results.md is `make results` of the committed ledger: regenerated here from the
    committed files alone (a copy of experiments/ and the jsons the entries name, in a folder of
    their own as a fresh clone would have them), it is the same, byte for byte."""
    import subprocess
    import sys

    clone = tmp_path / "clone"
    def link(src, dst):  # the weights are large: linked, not copied (the entries check they are there)
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src, dst)

    shutil.copytree(ROOT / "experiments", clone / "experiments", copy_function=link)
    shutil.copytree(DEEPPCB / "annotations", clone / "data" / "deeppcb" / "annotations")
    (clone / "docs").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "smallbox", "report", "--ledger", "experiments/ledger", "--out",
                           "docs/results.md"], cwd=clone, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (clone / "docs" / "results.md").read_text() == (ROOT / "docs" / "results.md").read_text()
