"""`smallbox yolo` keeps the `yolo` CLI's rules (recipes with standard keys only, Ultralytics' own
error for an unknown key), runs offline, and its trainer survives Ultralytics' DDP hand-off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yolo_helpers import ROOT, TINY_MODEL, convert_small_deeppcb

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_hold_only_standard_ultralytics_keys(recipe):
    from ultralytics.cfg import get_cfg

    get_cfg(recipe)  # raises SyntaxError on any key the stock `yolo` CLI would reject


def test_recipe_with_unknown_key_fails_with_ultralytics_message(tmp_path, capsys):
    from smallbox.cli import main

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: 1\nsmall_box_weight: 3.0\n")
    rc = main(["yolo", "train", f"cfg={recipe}", f"model={TINY_MODEL}", "data=unused.yaml"])
    assert rc == 2
    assert "'small_box_weight' is not a valid YOLO argument" in capsys.readouterr().err


def test_missing_weights_are_a_clear_error_not_a_download(tmp_path, capsys):
    from smallbox.cli import main

    rc = main(["yolo", "predict", f"model={tmp_path / 'missing.pt'}", "source=."])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing.pt: no such weights file" in err and "Traceback" not in err
    assert main(["yolo", "val", "data=x.yaml"]) == 2
    assert "needs model=" in capsys.readouterr().err
    assert main(["yolo", "train", f"model={TINY_MODEL}", f"data={tmp_path / 'none' / 'data.yaml'}"]) == 2
    assert "data.yaml: no such file" in capsys.readouterr().err


def test_offline_defaults_are_set_and_a_font_is_present():
    from smallbox.offline import apply_offline_defaults

    config_dir = apply_offline_defaults()
    from ultralytics.utils import ONLINE, USER_CONFIG_DIR

    assert Path(USER_CONFIG_DIR) == config_dir and (config_dir / "Arial.ttf").is_file()
    assert not ONLINE
    assert os.environ["YOLO_AUTOINSTALL"] == "false" and os.environ["HF_HUB_OFFLINE"] == "1"


def test_trainer_survives_the_ddp_pickle_in_a_fresh_process(tmp_path):
    """Ultralytics' multi-GPU launch cloudpickles the trainer class, its args and callbacks into a
    file that `torch.distributed.run` workers load; do exactly that, and rebuild the trainer the
    way the generated worker script does, in a new interpreter."""
    from ultralytics.utils.dist import generate_ddp_file

    from smallbox.adapters.yolo.trainer import SmallboxTrainer

    dataset = convert_small_deeppcb(tmp_path / "data", n_train=4, n_val=4)
    trainer = SmallboxTrainer(overrides=dict(model=str(TINY_MODEL), data=str(dataset["data"]), epochs=1, imgsz=64,
                                             device="cpu", project=str(tmp_path / "runs"), name="ddp"))
    script = Path(generate_ddp_file(trainer))
    state = script.with_suffix(".pt")
    try:
        worker = textwrap.dedent(f"""
            from ultralytics.utils import DEFAULT_CFG_DICT
            from ultralytics.utils.patches import torch_load
            state = torch_load({str(state)!r}, map_location="cpu")
            cfg = DEFAULT_CFG_DICT.copy()
            cfg.update(save_dir="")
            trainer = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
            model = trainer.get_model(cfg=trainer.args.model, verbose=False)
            print(type(trainer).__module__, type(trainer).__name__, type(model).__name__, trainer.data["smallbox"]["manifest"])
        """)
        out = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split()[-4:] == ["smallbox.adapters.yolo.trainer", "SmallboxTrainer", "SmallboxDetectionModel",
                                           "manifest.json"]
    finally:
        script.unlink(missing_ok=True)
        state.unlink(missing_ok=True)
