"""A new user's first hour (issue 16): every command refuses wrong input with exit 2 and a message
naming what to fix (no traceback, nothing written), runs land under the current folder, outputs
are readable by others, and the help says what a user needs: `--version`, defaults, the tv
settings, what a recipe changes."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from yolo_helpers import ROOT, TINY_MODEL, convert_small_deeppcb, no_network

from smallbox.cli import main

GT = ROOT / "data" / "deeppcb" / "annotations" / "val.json"
PREDS = sorted((ROOT / "data" / "deeppcb" / "predictions").glob("*.json.gz"))
IMAGES = ROOT / "data" / "deeppcb" / "images"
SMOKE = ROOT / "recipes" / "tv" / "smoke.yaml"


def run_cli(argv, capsys) -> tuple[int, str]:
    """``smallbox ARGV`` in this process: (exit code, stderr), argparse's exits included."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.fixture
def junk(tmp_path):
    """A text file, an empty folder and a missing path to give where something else belongs."""
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty").mkdir()
    return {"text": tmp_path / "notes.txt", "empty": tmp_path / "empty", "missing": tmp_path / "missing"}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return convert_small_deeppcb(tmp_path_factory.mktemp("first-hour-data"), n_train=4, n_val=4)


# -- wrong input: exit 2, a message, no traceback, nothing written ---------------------------------

PLAIN_CASES = {  # name -> (argv with {text} {empty} {missing} {out}, message fragment)
    "ensemble --out is a folder": (["ensemble", PREDS[0], "--gt", GT, "--out", "{empty}"], "is a folder; give a file name"),
    "ensemble --out under a file": (["ensemble", PREDS[0], "--gt", GT, "--out", "{text}/fused.json"], "is a file, not a folder"),
    "ensemble --csv is a folder": (["ensemble", PREDS[0], "--gt", GT, "--out", "{out}", "--csv", "{empty}"], "is a folder"),
    "ensemble --iou 2": (["ensemble", *PREDS, "--gt", GT, "--out", "{out}", "--iou", "2"], "must be in [0, 1]"),
    "ensemble --sigma 0": (["ensemble", *PREDS, "--gt", GT, "--out", "{out}", "--sigma", "0"], "must be > 0"),
    "ensemble --names count": (["ensemble", *PREDS, "--gt", GT, "--out", "{out}", "--names", "a"], "--names: got 1 for 2"),
    "ensemble --eval-with alone": (["ensemble", *PREDS, "--gt", GT, "--out", "{out}", "--eval-with", PREDS[0]], "give --eval too"),
    "compare --out is a file": (["compare", GT, *PREDS, "--images", IMAGES, "--out", "{text}"], "is a file, not a folder"),
    "compare --score-thr 5": (["compare", GT, *PREDS, "--images", IMAGES, "--out", "{out}", "--score-thr", "5"], "[0, 1]"),
    "compare --max-crops -1": (["compare", GT, *PREDS, "--images", IMAGES, "--out", "{out}", "--max-crops", "-1"], ">= 0"),
    "compare --iou 0": (["compare", GT, *PREDS, "--images", IMAGES, "--out", "{out}", "--iou", "0"], "(0, 1]"),
    "eval --json under a file": (["eval", GT, PREDS[0], "--json", "{text}/m.json"], "a file is in the way"),
    "eval --json is a folder": (["eval", GT, PREDS[0], "--json", "{empty}"], "is a folder; give a file name"),
    "slice --tile 0": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{out}", "--tile", "0"], ">= 1"),
    "slice --conf 2": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{out}", "--conf", "2"], "[0, 1]"),
    "slice --match-thr 5": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{out}", "--match-thr", "5"], "[0, 1]"),
    "slice --imgsz 0": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{out}", "--imgsz", "0"], ">= 1"),
    "slice --out is a folder": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{empty}"], "is a folder"),
    "slice model is text": (["slice", "{text}", "--images", IMAGES, "--out", "{out}"], "give YOLO weights (.pt)"),
    "slice model is a folder": (["slice", "{empty}", "--images", IMAGES, "--out", "{out}"], "is a folder, not a checkpoint"),
    "slice model is not a checkpoint": (["slice", "{text}.pt", "--images", IMAGES, "--out", "{out}"], "not a PyTorch checkpoint"),
    "slice --device 0 without CUDA": (["slice", TINY_MODEL, "--images", IMAGES, "--out", "{out}", "--device", "7"], "CUDA device"),
}


def _fill(argv, junk, out):
    names = {**{k: str(v) for k, v in junk.items()}, "out": str(out)}
    return [str(a).format(**names) for a in argv]


@pytest.mark.parametrize("name", PLAIN_CASES)
def test_wrong_input_is_a_clear_error(name, junk, tmp_path, capsys):
    argv, fragment = PLAIN_CASES[name]
    if "{text}.pt" in argv:
        junk["text"].with_suffix(".txt.pt").write_text("hello\n")
    out = tmp_path / "out" / "result.json"
    rc, err = run_cli(_fill(argv, junk, out), capsys)
    assert rc == 2, err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.txt", "empty", *(["notes.txt.pt"] if "{text}.pt" in argv else [])])


def test_a_file_that_cannot_be_written_is_exit_2_naming_it(tmp_path, capsys, monkeypatch):
    """Permission denied (or a full disk) while writing, in any command: the path and the reason."""
    import smallbox.cli.eval as eval_command

    target = tmp_path / "locked" / "m.json"

    def refuse(obj, path, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(eval_command, "write_json_atomic", refuse)
    rc, err = run_cli(["eval", GT, PREDS[0], "--json", target], capsys)
    assert rc == 2 and f"{target}: Permission denied" in err and "Traceback" not in err

    def bug(obj, path, **kwargs):
        raise OSError("an error of ours, not about a file")

    monkeypatch.setattr(eval_command, "write_json_atomic", bug)
    with pytest.raises(OSError, match="an error of ours"):  # a bug keeps its traceback
        main(["eval", str(GT), str(PREDS[0]), "--json", str(target)])


def test_an_output_folder_without_write_permission_fails_before_any_work(tmp_path, capsys, monkeypatch):
    from smallbox.cli import options

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(options.os, "access", lambda path, mode: Path(path) != locked)  # root may write anywhere
    rc, err = run_cli(["ensemble", *PREDS, "--gt", GT, "--out", locked / "fused.json"], capsys)
    assert rc == 2 and f"no permission to write in {locked}" in err
    rc, err = run_cli(["compare", GT, *PREDS, "--images", IMAGES, "--out", locked / "new" / "page"], capsys)
    assert rc == 2 and "no permission" in err


@pytest.fixture(scope="module")
def fake_checkpoints(tmp_path_factory):
    """A YOLO and a tv checkpoint as torch.save writes them (the pickle names what they hold)."""
    import torch
    from ultralytics.utils import IterableSimpleNamespace

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.save({"model": None, "train_args": IterableSimpleNamespace(imgsz=64)}, folder / "yolo.pt")
    torch.save({"model": {}, "recipe": {}, "classes": []}, folder / "tv.pt")
    torch.save({"weight": torch.zeros(1)}, folder / "state_dict.pt")
    return folder


def yolo_cases(data, ckpt):
    return {
        "no data= for train": (["yolo", "train", f"model={TINY_MODEL}"], "needs data="),
        "mode= key, no data=": (["yolo", "mode=train", f"model={TINY_MODEL}"], "needs data="),
        "data= a text file": (["yolo", "train", f"model={TINY_MODEL}", "data={text}"], "not a dataset YAML"),
        "data= a bare missing name": (["yolo", "train", f"model={TINY_MODEL}", "data=missing.yaml"], "no such file"),
        "model= a missing YAML": (["yolo", "train", "model=typo-model.yaml", f"data={data}"], "no such model YAML"),
        "model= a folder": (["yolo", "train", "model={empty}", f"data={data}"], "is a folder"),
        "model= not a checkpoint": (["yolo", "val", "model={text}.pt", f"data={data}"], "not a PyTorch checkpoint"),
        "model= a tv checkpoint": (["yolo", "predict", f"model={ckpt / 'tv.pt'}", f"source={IMAGES}"], "`smallbox tv` checkpoint"),
        "model= a state dict": (["yolo", "predict", f"model={ckpt / 'state_dict.pt'}", f"source={IMAGES}"], "not an Ultralytics checkpoint"),
        "resume= a tv checkpoint": (["yolo", "train", f"resume={ckpt / 'tv.pt'}"], "`smallbox tv` checkpoint"),
        "epochs=-1": (["yolo", "train", f"model={TINY_MODEL}", f"data={data}", "epochs=-1"], "'epochs' must be >= 1"),
        "lr0=abc": (["yolo", "train", f"model={TINY_MODEL}", f"data={data}", "lr0=abc"], "Valid 'lr0' types"),
        "imgsz=abc": (["yolo", "train", f"model={TINY_MODEL}", f"data={data}", "imgsz=abc"], "not a valid image size"),
        "device=7 without CUDA": (["yolo", "train", f"model={TINY_MODEL}", f"data={data}", "device=7"], "CUDA device"),
        "project= under a file": (["yolo", "train", f"model={TINY_MODEL}", f"data={data}", "project={text}/runs"], "is a file, not a folder"),
        "unknown key first": (["yolo", "train", f"model={TINY_MODEL}", "data=missing.yaml", "dataa=x"], "'dataa' is not a valid YOLO argument"),
        "split=test missing": (["yolo", "val", f"model={ckpt / 'yolo.pt'}", f"data={data}", "split=test"], "has no test: split"),
        "source= a text file": (["yolo", "predict", f"model={ckpt / 'yolo.pt'}", "source={text}"], "'hello' does not exist"),
        "source= a json": (["yolo", "predict", f"model={ckpt / 'yolo.pt'}", f"source={GT}"], "not an image or video"),
    }


YOLO_CASE_NAMES = list(yolo_cases("d", Path("c")))


@pytest.mark.parametrize("name", YOLO_CASE_NAMES)
def test_yolo_wrong_input_fails_before_ultralytics_starts(name, small_dataset, fake_checkpoints, junk, tmp_path,
                                                          capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (junk["text"].parent / "notes.txt.pt").write_text("hello\n")
    argv, fragment = yolo_cases(small_dataset["data"], fake_checkpoints)[name]
    rc, err = run_cli(_fill(argv, junk, tmp_path / "out"), capsys)
    assert rc == 2, err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def tv_cases(ckpt):
    tiny = [f"data.train={GT}", f"data.val={GT}", f"data.images={IMAGES}", "train.device=cpu"]
    return {
        "train a folder": (["tv", "train", "{empty}"], "is a folder; give a recipe YAML"),
        "train a YOLO checkpoint": (["tv", "train", ckpt / "yolo.pt"], "a YOLO checkpoint"),
        "train.epochs=abc": (["tv", "train", SMOKE, *tiny, "train.epochs=abc"], "expected a whole number"),
        "train.epochs=0": (["tv", "train", SMOKE, *tiny, "train.epochs=0"], "must be at least 1"),
        "train.batch=0": (["tv", "train", SMOKE, *tiny, "train.batch=0"], "must be at least 1"),
        "train.lr=abc": (["tv", "train", SMOKE, *tiny, "train.lr=abc"], "expected a number"),
        "train.amp=2": (["tv", "train", SMOKE, *tiny, "train.amp=2"], "expected true or false"),
        "train.device=cuda": (["tv", "train", SMOKE, *tiny, "train.device=cuda:3"], "CUDA device"),
        "train.device=gpu": (["tv", "train", SMOKE, *tiny, "train.device=gpu"], "not a device"),
        "train.project under a file": (["tv", "train", SMOKE, *tiny, "train.project={text}/runs"], "is a file, not a folder"),
        "eval a text file": (["tv", "eval", "{text}"], "not a PyTorch checkpoint"),
        "eval a YOLO checkpoint": (["tv", "eval", ckpt / "yolo.pt"], "a YOLO checkpoint"),
        "eval --batch 0": (["tv", "eval", ckpt / "tv.pt", "--batch", "0"], "must be >= 1"),
        "eval --out a folder": (["tv", "eval", ckpt / "tv.pt", "--out", "{empty}"], "is a folder"),
        "eval --device cuda": (["tv", "eval", ckpt / "tv.pt", "--device", "cuda:5"], "CUDA device"),
        "predict --out under a file": (["tv", "predict", ckpt / "tv.pt", "--images", IMAGES, "--out", "{text}/p.json"],
                                       "is a file, not a folder"),
    }


@pytest.mark.parametrize("name", list(tv_cases(Path("c"))))
def test_tv_wrong_input_fails_before_any_work(name, fake_checkpoints, junk, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, fragment = tv_cases(fake_checkpoints)[name]
    rc, err = run_cli(_fill(argv, junk, tmp_path / "out"), capsys)
    assert rc == 2, err
    assert fragment in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt"]


def test_tv_eval_checks_areas_before_predicting(tiny_tv_run, odd_deeppcb, capsys, monkeypatch):
    import smallbox.adapters.tv.engine as engine

    monkeypatch.setattr(engine, "predict", lambda *a, **k: pytest.fail("predicted before checking --areas"))
    rc, err = run_cli(["tv", "eval", tiny_tv_run["weights"], "--data", odd_deeppcb["val"], "--images",
                       odd_deeppcb["images"], "--areas", "foo", "--device", "cpu"], capsys)
    assert rc == 2 and "--areas must be coco, aitod, fit" in err


# -- checks that came too late (item 6) and the yolo ones of item 2 --------------------------------


def test_slice_eval_without_gt_refuses_before_running(tmp_path, capsys):
    out = tmp_path / "sliced.json"
    rc, err = run_cli(["slice", TINY_MODEL, "--images", IMAGES, "--out", out, "--eval"], capsys)
    assert rc == 2 and "--eval needs --gt" in err
    assert not out.exists() and not (tmp_path / "sliced.images.json").exists()


def test_misspelled_fitness_fails_before_the_dataset_scan(tmp_path, capsys, monkeypatch):
    dataset = convert_small_deeppcb(tmp_path / "data", n_train=2, n_val=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMALLBOX_FITNESS", "coco/APsmall")
    rc, err = run_cli(["yolo", "train", f"model={TINY_MODEL}", f"data={dataset['data']}", "epochs=1", "imgsz=64"], capsys)
    assert rc == 2 and "unknown metric 'coco/APsmall'" in err and "coco/AP_small" in err
    assert not (tmp_path / "runs").exists()
    assert not list(dataset["root"].rglob("*.cache"))  # Ultralytics' label scan never ran


@pytest.mark.parametrize("data", ["val-orig.json", "missing.json"])
def test_coco_json_as_data_says_what_to_run_and_leaves_nothing(data, small_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    json_path = small_dataset["root"].parent / data
    rc, err = run_cli(["yolo", "train", f"model={TINY_MODEL}", f"data={json_path}", "epochs=1", "imgsz=64"], capsys)
    assert rc == 2 and "is a COCO json" in err and f"smallbox convert {json_path} --images" in err
    assert list(tmp_path.iterdir()) == []  # no args.yaml, no empty weights/


@pytest.mark.parametrize("source", ["missing", "empty"])
def test_predict_source_missing_or_empty(source, junk, fake_checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(["yolo", "predict", f"model={fake_checkpoints / 'yolo.pt'}", f"source={junk[source]}"], capsys)
    assert rc == 2 and ("no such file or folder" if source == "missing" else "no images in this folder") in err
    assert not (tmp_path / "runs").exists()


def test_predictions_of_another_dataset_say_so_once(odd_deeppcb, capsys):
    rc, err = run_cli(["eval", odd_deeppcb["val"], PREDS[1]], capsys)
    assert rc == 2 and "0 of 9,981 predictions name an image of this ground truth: wrong dataset or split?" in err
    assert len(err.strip().splitlines()) == 1  # one sentence, not the same image listed ten times


def test_zero_based_category_ids_get_a_hint(tmp_path, capsys):
    """Predictions that are the ground truth itself, with class indices (category id - 1) as ids."""
    anns = json.loads(GT.read_text())["annotations"]
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"] - 1, "bbox": a["bbox"], "score": 1.0} for a in anns]
    (tmp_path / "zero-based.json").write_text(json.dumps(preds))
    rc, err = run_cli(["eval", GT, tmp_path / "zero-based.json"], capsys)
    assert rc == 2 and "look 0-based (class indices)" in err and "category id = class index + 1 here" in err


# -- runs under the current folder (item 1), results_coco.png (item 15) -----------------------------


def test_yolo_runs_land_under_the_current_folder_with_an_ap_by_size_plot(small_dataset, tmp_path, monkeypatch):
    from ultralytics.utils import SETTINGS

    monkeypatch.chdir(tmp_path)
    common = ["yolo", "train", f"model={TINY_MODEL}", f"data={small_dataset['data']}", "epochs=1", "imgsz=64", "batch=4",
              "workers=0", "device=cpu", "seed=0"]
    with no_network():
        assert main([*common, "name=first-hour", "plots=True"]) == 0
        assert main([*common, "project=mine/yolo", "name=relative", "plots=False"]) == 0
    default_run = tmp_path / "runs" / "detect" / "first-hour"
    assert (default_run / "weights" / "best.pt").is_file() and (tmp_path / "mine" / "yolo" / "relative" / "weights").is_dir()
    runs_dir = Path(SETTINGS["runs_dir"]).resolve()  # a relative setting ("runs") is the current folder's runs/
    for run in ("first-hour", "relative"):
        assert not (runs_dir / "detect" / run).exists() or runs_dir == (tmp_path / "runs").resolve()
    png = default_run / "results_coco.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size[0] == 2 * 420  # one panel per bucket set: coco and fit
    assert not (tmp_path / "mine" / "yolo" / "relative" / "results_coco.png").exists()  # plots=False


def test_ap_by_epoch_plot_has_a_panel_per_bucket_set_and_skips_empty_values(tmp_path):
    from PIL import Image

    from smallbox.callbacks.plots import plot_ap_by_epoch

    rows = [{"epoch": e, "train/loss": 3 - e, "coco/AP": 0.1 * e, "coco/AP_large": -1, "coco/AR_100": 0.2,
             "fit/AP_small": "" if e == 1 else 0.05 * e, "tiny/AP_small": 0.01} for e in (1, 2)]
    assert Image.open(plot_ap_by_epoch(rows, tmp_path / "a.png")).size[0] == 3 * 420
    assert Image.open(plot_ap_by_epoch(rows, tmp_path / "b.png", loss_column="train/loss")).size[0] == 4 * 420


# -- files others can read (item 3) -----------------------------------------------------------------

UMASK = os.umask(0o022)
os.umask(UMASK)


def _modes(folder: Path, itself: bool = True) -> set[tuple[str, str]]:
    """``(kind, octal mode)`` of every file and folder under ``folder`` (and of ``folder``)."""
    out = set()
    for path in [*([folder] if itself else []), *folder.rglob("*")]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode):
            out.add(("dir" if path.is_dir() else "file", oct(st.st_mode & 0o777)))
    return out


def test_outputs_are_readable_by_others(tiny_yolo_run, tiny_tv_run, odd_deeppcb, tmp_path, monkeypatch, capsys):
    expected = {("file", oct(0o666 & ~UMASK)), ("dir", oct(0o777 & ~UMASK))}  # what the session's runs were made with
    for run in (tiny_yolo_run["dir"], tiny_tv_run["dir"], tiny_yolo_run["dataset"]):
        assert _modes(run) <= expected, run
    assert {"predictions.json", "smallbox.json", "results.csv", "recipe.yaml"} <= {p.name for p in tiny_tv_run["dir"].iterdir()}
    old = os.umask(0o022)
    try:
        preds = [str(tiny_yolo_run["dir"] / "predictions.json"), str(tiny_tv_run["dir"] / "predictions.json")]
        val = str(odd_deeppcb["val"])
        assert main(["report", str(tiny_yolo_run["dir"]), str(tiny_tv_run["dir"]), "--out", str(tmp_path / "report" / "report.md")]) == 0
        assert main(["ensemble", *preds, "--gt", val, "--out", str(tmp_path / "ens" / "fused.json"), "--csv",
                     str(tmp_path / "ens" / "fused.csv")]) == 0
        assert main(["eda", val, "--out", str(tmp_path / "eda"), "--images", str(odd_deeppcb["images"])]) == 0
        assert main(["compare", val, *preds, "--images", str(odd_deeppcb["images"]), "--out", str(tmp_path / "compare"),
                     "--score-thr", "0.95"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for name in ("report/report.md", "ens/fused.json", "ens/fused.csv", "eda/summary.json", "compare/index.html"):
        assert (tmp_path / name).is_file(), name
    assert _modes(tmp_path, itself=False) == {("file", "0o644"), ("dir", "0o755")}  # pytest made tmp_path 0700


# -- help, version, what a recipe changes (items 12, 14, 15) ---------------------------------------


def test_version_is_pyprojects(capsys):
    from importlib.metadata import version

    pyproject = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"smallbox {pyproject}" == f"smallbox {version('smallbox')}"


@pytest.mark.parametrize("command", ["slice", "ensemble", "compare", "eval", "eda", "convert", "report", "significance"])
def test_help_shows_every_default(command, capsys):
    """Each option with a value by default says it in its help."""
    import argparse

    from smallbox.cli import COMMANDS, _command_module
    from smallbox.cli.options import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(prog=command, formatter_class=DefaultsHelpFormatter)
    _command_module(command).add_arguments(parser)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    squashed = re.sub(r"\s+", "", capsys.readouterr().out)  # argparse wraps lines, also after a hyphen
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and not isinstance(action, argparse._StoreConstAction):
            help_text = re.sub(r"\s+", "", action.help or "")
            assert help_text in squashed and "default" in squashed[squashed.index(help_text):][:len(help_text) + 40], action.dest
    assert re.sub(r"\s+", "", COMMANDS[command][1]) in squashed


def test_ensemble_help_states_the_folder_rule(capsys):
    with pytest.raises(SystemExit):
        main(["ensemble", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a converted split folder: its manifest's; else 1..N by file name" in text


def test_tv_train_help_lists_every_setting_with_its_default(capsys):
    from smallbox.adapters.tv.recipe import DEFAULTS

    assert main(["tv", "train", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for section, settings in DEFAULTS.items():
        for key, value in settings.items():
            shown = "" if isinstance(value, (list, dict)) else "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            assert any(line.strip().startswith(f"{section}.{key}={shown}") for line in lines), key
    assert any(re.fullmatch(r"\s+model\.arch=faster_rcnn\s+faster_rcnn \| retinanet", line) for line in lines)
    assert any("train.limit_batches=null" in line and "smoke runs" in line for line in lines)


def test_show_prints_what_a_recipe_changes_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["yolo", f"cfg={ROOT / 'recipes' / 'baseline.yaml'}", "epochs=3", f"model={ROOT / 'recipes/models/swin-s-yolo.yaml'}",
               "--show"])
    out = capsys.readouterr().out
    assert rc == 0 and list(tmp_path.iterdir()) == []
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ") and not line.startswith("  -")}
    assert rows["epochs"] == ["3", "100", "command", "line"]
    assert rows["imgsz"] == ["1024", "640", str(ROOT / "recipes" / "baseline.yaml")]
    assert "seed" not in rows and "mosaic" not in rows  # equal to Ultralytics' defaults
    # swin-s-yolo.yaml is `base: swin-t-yolo.yaml` with another backbone: the merged model
    model = out.split("nc comes from the data):\n", 1)[1]
    assert "swin_small_patch4_window7_224" in model and "Detect" in model and "base:" not in model


# -- experiment 3: one table, rows named by run (item 11) ------------------------------------------


def test_ensemble_table_names_rows_by_run_and_scores_other_fusions(tmp_path, capsys):
    from smallbox.cli.ensemble import row_names

    assert row_names(["a/specialist-val/predictions.json", "a/full-val/predictions.json"]) == [
        "specialist-val/predictions.json", "full-val/predictions.json"]
    assert row_names(["x/one.json", "y/two.json"]) == ["one.json", "two.json"]
    # two runs' predictions.json, as `make exp3` has them
    runs = []
    for name, src in zip(("specialist-val", "full-val"), PREDS):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.json").write_bytes(gzip.decompress(src.read_bytes()))
        runs.append(tmp_path / name / "predictions.json")
    common = ["ensemble", *runs, "--gt", GT, "--names", "specialist", "full"]
    assert main([str(a) for a in [*common, "--method", "nms", "--out", tmp_path / "nms.json"]]) == 0
    assert main([str(a) for a in [*common, "--method", "wbf", "--out", tmp_path / "wbf.json", "--eval", "--eval-with",
                                  tmp_path / "nms.json"]]) == 0
    out = capsys.readouterr().out
    table = out[out.index("predictions "):].splitlines()
    assert [line.split()[0] for line in table] == ["predictions", "specialist", "full", "nms.json", "wbf.json"]
    assert "(specialist)" in out and "(full)" in out  # the summary names them too


def test_make_exp3_prints_one_table():
    """The target ends in one ensemble call whose --eval table has both members and all four fusions."""
    dry = subprocess.run(["make", "-n", "exp3", "STAMP=/dev/null"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = dry.stdout.replace("\\\n", " ").splitlines()
    lines = [line for line in commands if "smallbox ensemble" in line or "smallbox eval" in line]
    assert len(lines) == 4 and not any("smallbox eval" in line for line in lines)
    assert "--eval" in lines[-1] and "--names specialist full" in lines[-1]
    assert all(f"runs/exp3/{n}.json" in lines[-1] for n in ("nms", "nms-gated", "wbf", "wbf-gated"))


# -- make setup with an existing environment (item 14) ---------------------------------------------


@pytest.mark.parametrize("has_torch", [True, False])
def test_make_setup_reuses_an_existing_environment(has_torch, tmp_path):
    """VENV= an environment that exists: no new venv, its torch kept (installed only when absent),
    smallbox pip-installed into it, the marker written there. Its python here logs its arguments."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    python = env / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                      + ("" if has_torch else 'case "$*" in *"import torch"*) exit 1;; esac\n') + "exit 0\n")
    python.chmod(0o755)
    done = subprocess.run(["make", "setup", f"VENV={env}", "PYTHON=false"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text()
    assert "-m venv" not in calls and "--upgrade pip" not in calls  # PYTHON=false would have failed it
    assert ("torch==" in calls) is not has_torch
    assert "-m pip install -q -e .[test]" in calls and (env / ".smallbox-installed").is_file()
