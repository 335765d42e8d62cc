"""``size_weighting.thresholds: fit`` takes the data's fitted buckets (the ones the evaluator
reports) when ``smallbox yolo train`` builds the model, and the checkpoint keeps the numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from smallbox.adapters.size_weighting import resolve_named_thresholds
from smallbox.errors import SmallboxError
from yolo_helpers import TINY_MODEL, convert_small_deeppcb


def _tertile_areas(coco_json) -> list[float]:
    """Independent of SizeBuckets: tertiles of the w*h areas, rounded to a whole side, squared."""
    areas = [a["bbox"][2] * a["bbox"][3] for a in json.loads(coco_json.read_text())["annotations"]]
    return [float(round(math.sqrt(q)) ** 2) for q in np.quantile(areas, [1 / 3, 2 / 3])]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return convert_small_deeppcb(tmp_path_factory.mktemp("sw-fit"), n_train=16, n_val=4)


@pytest.fixture
def fit_model_yaml(tmp_path):
    cfg = yaml.safe_load(TINY_MODEL.read_text())
    cfg["size_weighting"] = {"thresholds": "fit", "weights": [2.0, 1.5, 1.0], "renorm": True}
    path = tmp_path / "yolo-tiny-sw-fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fit_resolves_to_the_data_yamls_fitted_set(dataset):
    data = yaml.safe_load(dataset["data"].read_text())
    model_yaml = {"size_weighting": {"thresholds": "fit", "weights": [3, 1.5, 1]}, "yaml_file": "m.yaml"}
    resolved = resolve_named_thresholds(model_yaml, data)
    assert resolved["size_weighting"]["thresholds"] == _tertile_areas(dataset["train_json"])
    assert model_yaml["size_weighting"]["thresholds"] == "fit"  # the caller's dict is left alone
    numeric = {"size_weighting": {"thresholds": [1024, 9216], "weights": [3, 1.5, 1]}}
    assert resolve_named_thresholds(numeric, data) is numeric


def test_unknown_set_names_the_model_yaml_and_the_sets(dataset):
    data = yaml.safe_load(dataset["data"].read_text())
    with pytest.raises(SmallboxError, match=r"m.yaml: size_weighting.thresholds: 'tiny' is not .* \(it has: coco, fit\)"):
        resolve_named_thresholds({"size_weighting": {"thresholds": "tiny", "weights": [3, 1.5, 1]}, "yaml_file": "m.yaml"}, data)


def test_training_with_fit_thresholds_saves_the_numbers(dataset, fit_model_yaml, tmp_path):
    from smallbox.cli import main

    rc = main(["yolo", "train", f"model={fit_model_yaml}", f"data={dataset['data']}", "epochs=1", "imgsz=64",
               "batch=8", "device=cpu", "workers=0", "plots=False", "val=False", f"project={tmp_path}", "name=run"])
    assert rc in (0, None)
    ckpt = torch.load(tmp_path / "run" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    saved = ckpt["model"].yaml["size_weighting"]
    assert saved["thresholds"] == _tertile_areas(dataset["train_json"]) and saved["weights"] == [2.0, 1.5, 1.0]
