"""ImageNet weights for a timm backbone in the YOLO path: ``pretrained=FILE`` goes into the
backbone (strictly, not as a YOLO checkpoint); checkpoints no longer name the file, so fine-tune,
resume and a DDP worker's rebuild work once it is gone (each in a fresh process); no 10x bias
warm-up for a pretrained backbone, checked on the learning rate of the first optimizer step.

The "ImageNet" file is a seeded random tiny Swin wrapped as ``{"model_state": ...}`` (the strict
loader unwraps it; timm's own loading would silently skip it)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import timm
import torch
import yaml

from smallbox.errors import SmallboxError
from yolo_helpers import ROOT, convert_small_deeppcb, no_network

TINY_SWIN = ROOT / "recipes" / "models" / "swin-tiny-test-yolo.yaml"
TINY_KW = {"embed_dim": 32, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8]}
TRAIN = ["imgsz=64", "batch=4", "device=cpu", "workers=0", "plots=False", "seed=0", "exist_ok=True"]
ADAMW = ["optimizer=AdamW", "lr0=0.0001"]


class _Stop(KeyboardInterrupt):
    """Ends a run the way Ctrl-C does, leaving a resumable last.pt after epoch 1."""


def _env():
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def _python(code: str, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=_env(),
                          cwd=cwd, timeout=900)


def _imagenet_file(path):
    torch.manual_seed(0)
    sd = timm.create_model("swin_tiny_patch4_window7_224", **TINY_KW).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": sd}, path)
    return sd


def _backbone_equals_file(model, sd) -> bool:
    own = {k.replace("layers_", "layers."): v for k, v in model.model[0].body.state_dict().items()}
    return all(torch.equal(v, sd[k]) for k, v in own.items())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`smallbox yolo train model=<tiny Swin YAML> pretrained=FILE optimizer=AdamW lr0=0.0001`,
    stopped after epoch 1; then the file is moved away."""
    from ultralytics.utils import LOGGER
    from ultralytics.utils.callbacks import base

    from smallbox.cli import main

    folder = tmp_path_factory.mktemp("pretrained")
    dataset = convert_small_deeppcb(folder)
    weights = folder / "imagenet" / "tiny_swin.pth"
    sd = _imagenet_file(weights)
    seen = {}

    def at_start(trainer):
        seen["backbone_is_file"] = _backbone_equals_file(trainer.model, sd)

    def first_step(trainer):
        seen.setdefault("lr", {g["param_group"]: g["lr"] for g in trainer.optimizer.param_groups})

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise _Stop

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    saved = base.default_callbacks
    base.default_callbacks = {**saved, "on_pretrain_routine_end": [*saved["on_pretrain_routine_end"], at_start],
                              "on_train_batch_end": [*saved["on_train_batch_end"], first_step],
                              "on_fit_epoch_end": [*saved["on_fit_epoch_end"], stop_after_first_epoch]}
    try:
        with no_network():
            rc = main(["yolo", "train", f"model={TINY_SWIN}", f"data={dataset['data']}", f"pretrained={weights}",
                       f"project={folder / 'runs'}", "name=pre", "epochs=2", *ADAMW, *TRAIN])
    finally:
        base.default_callbacks = saved
        LOGGER.removeHandler(handler)
    assert rc == 130  # stopped after epoch 1, as planned
    weights.rename(weights.with_suffix(".moved"))  # the ImageNet file is gone from here on
    return {**dataset, "folder": folder, "dir": folder / "runs" / "pre", "weights": weights, "log": "\n".join(records), **seen}


def test_pretrained_file_goes_into_the_backbone(run):
    assert run["backbone_is_file"]
    assert f"smallbox pretrained={run['weights']}: timm swin_tiny_patch4_window7_224 (timm weights: {run['weights']} " \
           "from ['model_state']: 65 tensors loaded, 4 unused" in run["log"]


def test_checkpoint_names_no_file_to_read(run):
    from ultralytics.nn.tasks import load_checkpoint

    from smallbox.adapters.yolo.layers import pretrained_backbone_files

    model, ckpt = load_checkpoint(run["dir"] / "weights" / "last.pt")
    options = model.yaml["backbone"][0][3][2]
    assert options["weights"] is None and options["weights_from"] == str(run["weights"])
    assert pretrained_backbone_files(model) == [str(run["weights"])]  # what smallbox.json can say
    assert ckpt["train_args"]["pretrained"] == str(run["weights"]) and ckpt["train_args"]["warmup_bias_lr"] == 0.0


def test_no_bias_warm_up_for_a_pretrained_backbone(run):
    """Ultralytics' warm-up would start AdamW's biases at warmup_bias_lr=0.1, 1,000x lr0."""
    assert run["lr"]["bias"] == 0.0 and run["lr"]["weight"] == 0.0  # step 0 of the linear warm-up
    assert "smallbox: warmup_bias_lr 0.1 -> 0.0, the backbone is pretrained" in run["log"]
    assert "1,000x lr0" in run["log"]
    assert yaml.safe_load((run["dir"] / "args.yaml").read_text())["warmup_bias_lr"] == 0.0


def test_resume_without_the_file(run):
    p = subprocess.run([sys.executable, "-m", "smallbox", "yolo", "train", "resume",
                        f"model={run['dir'] / 'weights' / 'last.pt'}", f"data={run['data']}"],
                       capture_output=True, text=True, env=_env(), cwd=run["folder"], timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "Resuming training" in p.stdout + p.stderr


def test_fine_tune_at_another_size_without_the_file(run):
    best = run["dir"] / "weights" / "best.pt"
    p = subprocess.run([sys.executable, "-m", "smallbox", "yolo", "train", f"model={best}", f"data={run['data']}",
                        "imgsz=96", "epochs=1", "batch=4", "device=cpu", "workers=0", "plots=False", *ADAMW,
                        f"project={run['folder'] / 'runs'}", "name=finetune"],
                       capture_output=True, text=True, env=_env(), cwd=run["folder"], timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "Transferred 270/270 items" in out
    assert "warmup_bias_lr 0.1 -> 0.0, the backbone is pretrained" in out  # a fine-tune of a pretrained backbone too


DDP_WORKER = r"""
import json, sys
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import DEFAULT_CFG_DICT
from smallbox.adapters.yolo.trainer import SmallboxTrainer

last, data = sys.argv[1], sys.argv[2]
parent = SmallboxTrainer(overrides=dict(model=last, resume=last, data=data, device="cpu", workers=0))
# what ultralytics.utils.dist.generate_ddp_file runs in every worker (minus the process group)
worker = SmallboxTrainer(cfg={**DEFAULT_CFG_DICT, "save_dir": ""}, overrides=vars(parent.args))
worker.model = parent.model
worker.setup_model()
ref = load_checkpoint(last)[0].state_dict()
own = worker.model.state_dict()
keys = [k for k in own if k.startswith("model.0.")]
print("REPORT " + json.dumps({"tensors": len(keys), "equal": all(own[k].equal(ref[k]) for k in keys)}))
"""


def test_ddp_worker_rebuilds_without_the_file(run):
    p = _python(DDP_WORKER, run["dir"] / "weights" / "last.pt", run["data"], cwd=run["folder"])
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    report = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report == {"tensors": 65, "equal": True}


# --- bias warm-up at step 0, without pretrained= ---------------------------------------------


def _first_step_lrs(tmp_path, data, model, **overrides) -> dict:
    from smallbox.adapters.yolo.trainer import SmallboxTrainer

    # epochs=2: Ultralytics warms up for at most all epochs but the last
    trainer = SmallboxTrainer(overrides=dict(model=str(model), data=str(data), epochs=2, imgsz=64, batch=4, device="cpu",
                                             workers=0, plots=False, val=False, optimizer="AdamW", lr0=0.0001,
                                             project=str(tmp_path / "runs"), name="lr", exist_ok=True, **overrides))
    lrs = {}

    def first_step(tr):
        lrs.update({g["param_group"]: g["lr"] for g in tr.optimizer.param_groups})
        raise _Stop

    trainer.add_callback("on_train_batch_end", first_step)
    with pytest.raises(_Stop):
        trainer.train()
    return lrs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small dataset and a tiny Swin model YAML whose row names a weights file."""
    folder = tmp_path_factory.mktemp("warmup")
    dataset = convert_small_deeppcb(folder, n_train=4, n_val=2)
    weights = folder / "tiny_swin.pth"
    _imagenet_file(weights)
    cfg = yaml.safe_load(TINY_SWIN.read_text())
    cfg["backbone"][0][3][2]["weights"] = str(weights)
    (folder / "pretrained.yaml").write_text(yaml.safe_dump(cfg))
    return {**dataset, "folder": folder, "weights": weights, "model": folder / "pretrained.yaml"}


@pytest.mark.parametrize("model,given,bias_lr", [("pretrained", {}, 0.0),  # Ultralytics: 0.1 = 1,000x lr0
                                                 ("pretrained", {"warmup_bias_lr": 0.05}, 0.05),  # the user's choice stays
                                                 ("random", {}, 0.1)])  # random init: Ultralytics' default
def test_bias_lr_of_the_first_step(small, tmp_path, model, given, bias_lr):
    path = small["model"] if model == "pretrained" else TINY_SWIN
    assert _first_step_lrs(tmp_path, small["data"], path, **given)["bias"] == pytest.approx(bias_lr)


def test_ddp_workers_learn_what_the_user_set(small, tmp_path, monkeypatch):
    """A DDP worker is handed every setting of its parent: whether warmup_bias_lr was the user's
    choice comes from the parent, through the environment."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    import smallbox.adapters.yolo.trainer as trainer_module

    common = dict(model=str(small["model"]), data=str(small["data"]), device="cpu", project=str(tmp_path), exist_ok=True)
    for given, expected in (({}, False), ({"warmup_bias_lr": 0.1}, True)):
        monkeypatch.setattr(trainer_module, "RANK", -1)
        parent = trainer_module.SmallboxTrainer(overrides={**common, **given})
        monkeypatch.setattr(trainer_module, "RANK", 0)
        worker = trainer_module.SmallboxTrainer(cfg={**DEFAULT_CFG_DICT, "save_dir": ""}, overrides=vars(parent.args))
        assert parent.bias_warmup_given is worker.bias_warmup_given is expected


# --- which pretrained= goes where ------------------------------------------------------------


def test_pretrained_choices(small, run, tmp_path):
    from smallbox.adapters.yolo.trainer import SmallboxTrainer

    def trainer(model, pretrained):
        return SmallboxTrainer(overrides=dict(model=str(model), data=str(small["data"]), pretrained=str(pretrained),
                                              device="cpu", project=str(tmp_path), exist_ok=True))

    best = run["dir"] / "weights" / "best.pt"
    assert trainer(TINY_SWIN, best).backbone_cfg is None  # a YOLO checkpoint: Ultralytics' own pretrained=
    row = trainer(TINY_SWIN, small["weights"]).backbone_cfg["backbone"][0]
    assert row[3][2]["weights"] == str(small["weights"]) and row[3][2]["embed_dim"] == 32
    with pytest.raises(SmallboxError, match="already holds its backbone's weights"):
        trainer(best, small["weights"])
    with pytest.raises(SmallboxError, match="has no TimmBackbone layer"):
        trainer(ROOT / "recipes" / "models" / "csp-yolov8s.yaml", small["weights"])


def test_several_timm_backbones_need_their_own_rows():
    from smallbox.adapters.yolo.model import with_backbone_weights

    row = [-1, 1, "TimmBackbone", ["resnet18", [2, 3, 4], {}]]
    cfg = {"backbone": [row, [0, 1, "Index", [128, 0]], row], "head": [], "yaml_file": "two.yaml"}
    with pytest.raises(SmallboxError, match=r"two.yaml has 2 TimmBackbone layers \(layer 0 \(resnet18\), layer 2"):
        with_backbone_weights(cfg, "w.pth")
    one = {"backbone": [[-1, 1, "TimmBackbone", ["resnet18"]]], "head": []}
    assert with_backbone_weights(one, "w.pth")["backbone"][0][3] == ["resnet18", [1, 2, 3], {"weights": "w.pth"}]
    assert one["backbone"][0][3] == ["resnet18"]  # the caller's dict is left alone
