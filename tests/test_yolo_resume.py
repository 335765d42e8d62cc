"""A resumed YOLO run keeps the record of the run it continues (issue 23): `smallbox yolo train
resume model=.../last.pt` after an interruption leaves args.yaml as the run was started (the
model YAML, optimizer=auto, its lr0), except the settings Ultralytics lets a resume change, so
`report` still groups it with its sibling seeds; smallbox.json names the model it started from.
And a trainer handed another trainer's callbacks (as a DDP worker is) registers smallbox's once."""

from __future__ import annotations

import json

import pytest
import yaml

from yolo_helpers import TINY_MODEL, convert_small_deeppcb, no_network

TRAIN = ["epochs=3", "imgsz=96", "batch=4", "device=cpu", "workers=0", "plots=False", "seed=1", "lr0=0.02"]


class Interrupted(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return convert_small_deeppcb(tmp_path_factory.mktemp("resume"), n_train=8, n_val=4)


def interrupted_run(dataset, folder):
    """A run stopped (as by Ctrl-C) right after its first epoch's last.pt was written."""
    from ultralytics.utils.callbacks import base

    from smallbox.cli import main

    def stop(trainer):
        raise Interrupted

    saved = base.default_callbacks
    base.default_callbacks = {**saved, "on_model_save": [*saved["on_model_save"], stop]}
    try:
        with no_network():
            rc = main(["yolo", "train", f"model={TINY_MODEL}", f"data={dataset['data']}", f"project={folder}", "name=run",
                       *TRAIN])
        assert rc == 130  # smallbox's answer to Ctrl-C
    finally:
        base.default_callbacks = saved
    return folder / "run"


def test_a_resumed_run_keeps_the_settings_it_started_with(dataset, tmp_path):
    from smallbox.cli import main

    run = interrupted_run(dataset, tmp_path)
    started = yaml.safe_load((run / "args.yaml").read_text())
    assert started["model"] == str(TINY_MODEL) and started["optimizer"] == "auto" and started["lr0"] == 0.02
    with no_network():
        assert main(["yolo", "train", "resume", f"model={run / 'weights' / 'last.pt'}", "workers=1"]) == 0
    after = yaml.safe_load((run / "args.yaml").read_text())
    changed = {k for k in started if after.get(k) != started[k]}
    assert changed == {"workers", "resume"}, changed  # the one setting the command changed, and the resume itself
    assert after["workers"] == 1 and after["resume"].endswith("last.pt")
    info = json.loads((run / "smallbox.json").read_text())
    assert info["model"] == str(TINY_MODEL) and info["backbone_weights"] == "random init" and info["epochs"] == 3
    rows = (run / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # the epochs before and after the interruption, once each


def test_a_trainer_handed_another_trainers_callbacks_registers_its_own_once(dataset, tmp_path):
    from smallbox.adapters.yolo.trainer import SmallboxTrainer
    from smallbox.callbacks import export, geometry, plots

    args = {"model": str(TINY_MODEL), "data": str(dataset["data"]), "project": str(tmp_path), "device": "cpu",
            "imgsz": 96, "epochs": 1}
    parent = SmallboxTrainer(overrides={**args, "name": "parent"})
    worker = SmallboxTrainer(overrides={**args, "name": "worker"}, _callbacks=parent.callbacks)  # as DDP builds it
    for event, callback in (("on_train_start", geometry.log_input_geometry), ("on_train_end", export.on_train_end),
                            ("on_train_end", plots.on_train_end)):
        assert parent.callbacks[event].count(callback) == 1
        assert worker.callbacks[event].count(callback) == 1
