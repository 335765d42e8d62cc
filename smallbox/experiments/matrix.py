"""The experiment matrix: a YAML file of arms x seeds (``experiments/deeppcb.yaml``)::

    name: deeppcb                 # the ledger folder: LEDGER/<name>/<arm>/seed<k>/
    scale: gpu                    # recorded in every entry: entries of two scales are never pooled
    data:                         # COCO jsons + image folder, relative to the matrix's folder's cwd
      train: data/deeppcb/annotations/train-699.json     # trains the weights
      select: data/deeppcb/annotations/select-101.json   # picks the epoch (best.pt), or `none`:
                                                         #   the last epoch of the fixed schedule
      report: data/deeppcb/annotations/val.json          # scores the chosen weights; shares no
                                                         #   image with train or select
      images: data/deeppcb/images
      splits: [small:0:32^2]      # per-area splits for specialists (smallbox convert --split)
      tiles: 320,0                # tiles of the train images (smallbox convert --tiles), for `split: tiles`
      areas: [fit, aitod]         # size ranges scored besides COCO's (smallbox convert --areas; default fit)
    seeds: [0, 1, 2]
    baseline: baseline            # the arm every other arm is compared with
    defaults:                     # Ultralytics train arguments of every arm (never `seed`)
      epochs: 60
      imgsz: 640
    evaluation: {conf: 0.001, iou: 0.7, max_det: 100}
    arms:
      baseline:
        model: recipes/models/csp-yolov8s.yaml
        about: YOLOv8s from scratch
      exp1-swin-t:
        model: recipes/models/swin-t-yolo.yaml
        pretrained: weights/swin_tiny_patch4_window7_224.safetensors   # used if present; the entry says which
        args: {optimizer: AdamW, lr0: 0.0001, warmup_bias_lr: 0.0}
      exp3-specialist:
        model: recipes/models/csp-yolov8s.yaml
        split: small              # trains on data-small.yaml, scored on the full report split
        fuse_with: baseline       # also scored fused with that arm's run of the same seed
        fuse: {method: wbf, gate: small}   # the specialist gives the small boxes, the partner the rest
      exp2-ft-1024:
        init_from: baseline       # fine-tunes that arm's chosen checkpoint of the same seed
        args: {imgsz: 1024, epochs: 20}
      exp2-predict-1024:
        init_from: baseline       # no training: the baseline's weights, predicted differently
        train: false
        predict: {imgsz: 1024}    # or {slice: {}} (smallbox slice's defaults) / {slice: {tile: 320}}

Why three data roles: a checkpoint picked by its score on a split scores higher on that split than
on new images (the pick rides the noise), and the noisier an arm the more. So the split that
picks never scores: ``report`` must share no image (by file) with ``train`` or ``select``.

:func:`load_matrix` checks the whole file before any work and lists every problem at once, each
naming the file and key. Every arm's settings resolve to one dict of Ultralytics arguments; the
entry records it.
"""

from __future__ import annotations

import math
import re

import numpy as np
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import read_yaml

ARM_KEYS = {"model", "args", "about", "pretrained", "split", "fuse_with", "fuse", "init_from", "train", "predict",
            "estimate_minutes"}
TOP_KEYS = {"name", "scale", "data", "seeds", "baseline", "defaults", "evaluation", "arms", "about", "fitness",
            "keep_weights_mb"}
DATA_KEYS = {"train", "select", "report", "images", "splits", "tiles", "areas"}
TILES_SPLIT = "tiles"  # an arm's `split: tiles` trains on data-tiles.yaml (data.tiles: SIZE[,OVERLAP])
DEFAULT_EVALUATION = {"conf": 0.001, "iou": 0.7, "max_det": 100}
# Set by the runner for every run: a matrix that sets them would be silently overridden (seed) or
# would move the run's files out of the ledger's reach.
RUNNER_ARGS = {"seed", "data", "model", "project", "name", "exist_ok", "device", "resume"}
FUSE_METHODS = ("wbf", "nms", "soft_nms", "nmw")
NO_SELECT = "none"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class Arm:
    """One arm of the matrix: what is trained (or, with ``train: false``, only predicted) and how."""

    name: str
    model: str
    args: dict
    about: str = ""
    pretrained: str | None = None
    split: str | None = None
    fuse_with: str | None = None
    init_from: str | None = None
    estimate_minutes: float | None = None
    train: bool = True
    predict: dict = field(default_factory=dict)
    fuse: dict = field(default_factory=dict)

    @property
    def depends_on(self) -> list[str]:
        return [a for a in (self.fuse_with, self.init_from) if a]

    @property
    def inference_only(self) -> bool:
        return not self.train


@dataclass
class Matrix:
    """A parsed matrix file (see the module docstring)."""

    path: Path
    name: str
    scale: str
    data: dict
    seeds: list[int]
    baseline: str
    arms: dict[str, Arm]
    evaluation: dict = field(default_factory=lambda: dict(DEFAULT_EVALUATION))
    fitness: str = "coco/AP"
    keep_weights_mb: float = 8.0
    about: str = ""

    @property
    def selects(self) -> bool:
        """Whether a split picks each run's epoch (else the last epoch is the run's checkpoint)."""
        return self.data.get("select") not in (None, NO_SELECT)

    def resolved(self, base) -> "Matrix":
        """A copy with the data paths and model files absolute (relative ones are taken from
        ``base``), so runs started anywhere (a Ray worker) find them."""
        base = Path(base)

        def absolute(value):
            return str((base / value).resolve()) if value and not Path(str(value)).is_absolute() else value

        data = {k: absolute(v) if k in ("train", "report", "images") or (k == "select" and v != NO_SELECT) else v
                for k, v in self.data.items()}

        def existing(value):  # a bare `yolov8n.yaml` is Ultralytics' own, not a file here
            return absolute(value) if value and (base / str(value)).exists() else value

        arms = {n: replace(a, model=existing(a.model), pretrained=existing(a.pretrained)) for n, a in self.arms.items()}
        return replace(self, data=data, arms=arms)

    def pairs(self, only=None) -> list[tuple[str, int]]:
        """Every (arm, seed), arms in the file's order (dependencies first), seeds ascending."""
        arms = [a for a in self.arms if not only or a in only]
        return [(a, s) for s in self.seeds for a in _dependency_order(self.arms, arms)]


class Problems:
    """Every problem of one matrix file, reported together."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, key: str, text: str) -> None:
        self.items.append(f"{key}: {text}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  ".join(self.items)
            raise SmallboxError(f"{self.path}: {len(self.items)} problem(s):\n  {lines}")


def load_matrix(path, check_files: bool = True, base=None) -> Matrix:
    """Read and check a matrix file: types, ranges, arm references, and (``check_files``) that the
    data and model files exist (relative paths from ``base``, default the current folder) and that
    the report split shares no image with train or select. Every problem is listed at once."""
    path = Path(path)
    raw = read_yaml(path, "matrix file")
    problems = Problems(path)
    if not isinstance(raw, dict):
        raise SmallboxError(f"{path}: a matrix file is a mapping (name, data, seeds, arms, ...)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        problems.add(", ".join(sorted(map(str, unknown))), f"unknown key(s) (known: {', '.join(sorted(TOP_KEYS))})")
    for key in ("name", "data", "seeds", "arms"):
        if key not in raw:
            problems.add(key, "missing")
    name = _name(raw.get("name", "matrix"), "name", problems)
    data = _data(raw.get("data"), problems)
    seeds = _seeds(raw.get("seeds", []), problems)
    defaults = _mapping(raw.get("defaults"), "defaults", problems)
    _no_runner_args(defaults, "defaults", problems)
    evaluation = _evaluation(raw.get("evaluation"), problems)
    keep_mb = _number(raw.get("keep_weights_mb", 8.0), "keep_weights_mb", problems, low=0)
    arms_raw = raw.get("arms")
    if arms_raw is not None and not isinstance(arms_raw, dict):
        problems.add("arms", f"must be a mapping of arm name -> settings, got a {type(arms_raw).__name__}")
        arms_raw = {}
    arms = {}
    for arm_name, spec in (arms_raw or {}).items():
        arm = _arm(str(arm_name), spec, defaults, problems)
        if arm is not None:
            arms[str(arm_name)] = arm
    baseline = str(raw.get("baseline", next(iter(arms), "")))
    _check_references(arms, baseline, data, problems)
    if check_files and data:
        _check_files(data, arms, Path(base or Path.cwd()), problems)
    problems.raise_if_any()
    return Matrix(path, name, str(raw.get("scale", "gpu")), data, seeds, baseline, arms, evaluation,
                  str(raw.get("fitness", "coco/AP")), float(keep_mb), str(raw.get("about", "")))


# ---------------------------------------------------------------------------------------------
# Sections


def _name(value, key: str, problems: Problems) -> str:
    text = str(value)
    if not isinstance(value, (str, int)) or not NAME.match(text):
        problems.add(key, f"{value!r} must be a folder name (letters, digits, _ . + -)")
    return text


def _data(value, problems: Problems) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add("data", "must be a mapping (train, select, report, images)")
        return {}
    if "val" in value:
        problems.add("data.val", "name the two roles a val split played instead: select: (the json that picks each "
                                 "run's epoch, or none: the last epoch) and report: (the json that scores it, sharing "
                                 "no image with train or select)")
    unknown = set(value) - DATA_KEYS - {"val"}
    if unknown:
        problems.add("data", f"unknown key(s) {sorted(map(str, unknown))} (known: {', '.join(sorted(DATA_KEYS))})")
    for key in ("train", "select", "report", "images"):
        if not isinstance(value.get(key), str) or not value.get(key):
            problems.add(f"data.{key}", "missing" if key not in value else f"must be a path, got {value[key]!r}")
    if "tiles" in value:
        from ..datasets.tiles import TileSpec

        try:
            TileSpec.parse(str(value["tiles"]))
        except SmallboxError as e:
            problems.add("data.tiles", str(e))
    areas = value.get("areas", ["fit"])
    if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
        problems.add("data.areas", f"must be a list of --areas specs such as [fit, aitod], got {areas!r}")
    else:
        from ..datasets import SizeBuckets

        for i, spec in enumerate(areas):
            try:
                SizeBuckets.parse(spec, np.ones(4) if spec.startswith("fit") else None)
            except SmallboxError as e:
                problems.add(f"data.areas[{i}]", str(e))
    splits = value.get("splits", [])
    if not isinstance(splits, list):
        problems.add("data.splits", "must be a list of NAME:MIN_AREA:MAX_AREA")
    else:
        from ..datasets.split import parse_area_range

        for i, spec in enumerate(splits):
            try:
                parse_area_range(spec)
            except SmallboxError as e:
                problems.add(f"data.splits[{i}]", str(e))
    return dict(value)


def _seeds(value, problems: Problems) -> list[int]:
    if not isinstance(value, list) or not value:
        problems.add("seeds", f"must be a non-empty list of integers such as [0, 1, 2], got {value!r}")
        return []
    bad = [s for s in value if not _is_int(s) or s < 0]
    if bad:
        problems.add("seeds", f"must be non-negative integers, got {bad[0]!r}")
        return []
    if len(set(value)) != len(value):
        problems.add("seeds", f"seed listed twice in {value}")
    return [int(s) for s in value]


def _evaluation(value, problems: Problems) -> dict:
    given = _mapping(value, "evaluation", problems)
    unknown = set(given) - set(DEFAULT_EVALUATION)
    if unknown:
        problems.add("evaluation", f"unknown key(s) {sorted(map(str, unknown))} (known: conf, iou, max_det)")
    out = {**DEFAULT_EVALUATION, **{k: v for k, v in given.items() if k in DEFAULT_EVALUATION}}
    _number(out["conf"], "evaluation.conf", problems, low=0, high=1)
    _number(out["iou"], "evaluation.iou", problems, low=0, high=1, low_open=True)
    if not _is_int(out["max_det"]) or out["max_det"] < 1:
        problems.add("evaluation.max_det", f"must be a positive integer, got {out['max_det']!r}")
    return out


def _arm(name: str, spec, defaults: dict, problems: Problems) -> Arm | None:
    key = f"arms.{name}"
    if not NAME.match(name):
        problems.add(key, "an arm name must be a folder name (letters, digits, _ . + -)")
    if not isinstance(spec, dict):
        problems.add(key, "must be a mapping (model, args, ...)")
        return None
    unknown = set(spec) - ARM_KEYS
    if unknown:
        problems.add(key, f"unknown key(s) {sorted(map(str, unknown))} (known: {', '.join(sorted(ARM_KEYS))})")
    train = spec.get("train", True)
    if not isinstance(train, bool):
        problems.add(f"{key}.train", f"must be true or false, got {train!r}")
        train = True
    args = _mapping(spec.get("args"), f"{key}.args", problems)
    _no_runner_args(args, f"{key}.args", problems)
    predict = _predict(spec.get("predict"), f"{key}.predict", problems)
    fuse = _fuse(spec.get("fuse"), f"{key}.fuse", problems)
    if fuse and not spec.get("fuse_with"):
        problems.add(f"{key}.fuse", "needs fuse_with: (the arm to fuse with)")
    if not train:
        if not spec.get("init_from") and not spec.get("model"):
            problems.add(key, "train: false needs init_from: (the arm whose checkpoints it predicts with) or model: "
                              "(a trained .pt or an export: .onnx, .torchscript, an OpenVINO folder)")
        if spec.get("init_from") and spec.get("model"):
            problems.add(key, "train: false takes init_from: or model:, not both")
        for k in ("args", "pretrained", "split"):
            if k in spec:
                problems.add(f"{key}.{k}", "an arm with train: false trains nothing: leave it out")
    elif not spec.get("model") and not spec.get("init_from"):
        problems.add(key, "needs model: (a model YAML or local .pt) or init_from: (an arm)")
    for k in ("model", "about", "pretrained", "split", "fuse_with", "init_from"):
        if k in spec and spec[k] is not None and not isinstance(spec[k], str):
            problems.add(f"{key}.{k}", f"must be a string, got {spec[k]!r}")
    estimate = spec.get("estimate_minutes")
    if estimate is not None:
        _number(estimate, f"{key}.estimate_minutes", problems, low=0, low_open=True)
    if not train and spec.get("model") and isinstance(spec.get("model"), str):
        _check_predict_model(spec["model"], f"{key}.model", problems)
    return Arm(name, str(spec.get("model") or ""), {**defaults, **args} if train else {}, str(spec.get("about", "")),
               spec.get("pretrained"), spec.get("split"), spec.get("fuse_with"), spec.get("init_from"),
               float(estimate) if _is_number(estimate) else None, train, predict, fuse)


def _check_predict_model(value: str, key: str, problems: Problems) -> None:
    """A model an inference-only arm predicts with: a local .pt or export (nothing is downloaded)."""
    path = Path(value)
    if not (path.is_file() or (path.is_dir() and path.name.endswith("_model"))):
        problems.add(key, f"{value}: no such model file (a trained .pt, or an export: .onnx, .torchscript, an OpenVINO folder)")


def _predict(value, key: str, problems: Problems) -> dict:
    """``{imgsz: N}`` (predict at another size than training) or ``{slice: {...}}`` (smallbox
    slice, its defaults unless given: tile, overlap, merge, match_metric, match_thr, upscale, imgsz)."""
    given = _mapping(value, key, problems)
    unknown = set(given) - {"imgsz", "slice"}
    if unknown:
        problems.add(key, f"unknown key(s) {sorted(map(str, unknown))} (known: imgsz, slice)")
    if "imgsz" in given and (not _is_int(given["imgsz"]) or given["imgsz"] < 32):
        problems.add(f"{key}.imgsz", f"must be an integer of at least 32, got {given['imgsz']!r}")
    if "slice" in given:
        spec = given["slice"]
        if spec is True or spec is None:
            spec = {}
        if not isinstance(spec, dict):
            problems.add(f"{key}.slice", f"must be a mapping of slice options (or {{}} for its defaults), got {spec!r}")
            spec = {}
        unknown = set(spec) - SLICE_OPTIONS
        if unknown:
            problems.add(f"{key}.slice", f"unknown option(s) {sorted(map(str, unknown))} (known: {', '.join(sorted(SLICE_OPTIONS))})")
        given = {**given, "slice": spec}
        if "imgsz" in given:
            problems.add(key, "imgsz and slice: give the tiles' size as slice: {imgsz: N}")
    return given


SLICE_OPTIONS = {"tile", "overlap", "merge", "match_metric", "match_thr", "upscale", "imgsz", "full"}


def _fuse(value, key: str, problems: Problems) -> dict:
    given = _mapping(value, key, problems)
    unknown = set(given) - {"method", "gate"}
    if unknown:
        problems.add(key, f"unknown key(s) {sorted(map(str, unknown))} (known: method, gate)")
    method = given.get("method", "wbf")
    if method not in FUSE_METHODS:
        problems.add(f"{key}.method", f"{method!r}: choose one of {', '.join(FUSE_METHODS)}")
    if "gate" in given:
        from ..datasets import SizeBuckets
        from ..fusion.members import specialist_gates

        try:
            specialist_gates(str(given["gate"]), 2, SizeBuckets.coco())
        except SmallboxError as e:
            problems.add(f"{key}.gate", str(e))
    return {"method": method, **({"gate": str(given["gate"])} if "gate" in given else {})} if given else {}


def _check_references(arms: dict[str, Arm], baseline: str, data: dict, problems: Problems) -> None:
    split_names = [str(s).split(":")[0] for s in data.get("splits", []) if isinstance(data.get("splits"), list)]
    if data.get("tiles"):
        split_names.append(TILES_SPLIT)
    for arm in arms.values():
        for ref in arm.depends_on:
            if ref not in arms:
                problems.add(f"arms.{arm.name}", f"refers to unknown arm {ref!r}")
            elif ref == arm.name:
                problems.add(f"arms.{arm.name}", "refers to itself")
        if arm.split and arm.split not in split_names:
            problems.add(f"arms.{arm.name}.split", f"trains on split {arm.split!r}, which data.splits does not make"
                         + (" (split: tiles needs data.tiles: SIZE[,OVERLAP])" if arm.split == TILES_SPLIT else ""))
    if arms and baseline not in arms:
        problems.add("baseline", f"{baseline!r} is not an arm (arms: {', '.join(arms)})")
    if not arms and isinstance(data, dict):
        problems.add("arms", "no arm")
    try:
        if not problems.items:
            _dependency_order(arms, list(arms))
    except SmallboxError as e:
        problems.add("arms", str(e))


def _check_files(data: dict, arms: dict[str, Arm], base: Path, problems: Problems) -> None:
    """Data and model files exist; the report split shares no image with train or select."""
    def here(value):
        return Path(value) if Path(value).is_absolute() else base / value

    jsons = {}
    for role in ("train", "select", "report"):
        value = data.get(role)
        if not isinstance(value, str) or (role == "select" and value == NO_SELECT):
            continue
        path = here(value)
        if not path.is_file():
            problems.add(f"data.{role}", f"{value}: no such file")
            continue
        try:
            jsons[role] = _file_names(path)
        except SmallboxError as e:
            problems.add(f"data.{role}", str(e))
    images = data.get("images")
    if isinstance(images, str) and not here(images).is_dir():
        problems.add("data.images", f"{images}: no such folder")
    for role in ("train", "select"):
        shared = jsons.get("report", set()) & jsons.get(role, set())
        if shared:
            problems.add("data.report", f"shares {len(shared)} image(s) with data.{role} (e.g. {sorted(shared)[0]}): "
                                        "the split that scores must not have trained or picked the weights")
    shared = jsons.get("select", set()) & jsons.get("train", set())
    if shared:
        problems.add("data.select", f"shares {len(shared)} image(s) with data.train (e.g. {sorted(shared)[0]}): "
                                    "picking epochs on training images favours the most over-fitted one")
    for arm in arms.values():
        if arm.train and arm.model:
            _check_model(arm, here, problems)


def _file_names(path: Path) -> set[str]:
    """The images of a COCO json, by normalised file name (two ids naming one file are one image)."""
    import os

    from ..fileio import read_json

    raw = read_json(path)
    images = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(images, list):
        raise SmallboxError(f"{path}: not a COCO json (no images list)")
    return {os.path.normpath(str(im.get("file_name", ""))) for im in images if isinstance(im, dict)}


def _check_model(arm: Arm, here, problems: Problems) -> None:
    from ..cli.yolo import check_model_value

    value = arm.model
    local = here(value)
    try:
        check_model_value(str(local) if local.exists() or "/" in value or "\\" in value else value)
    except SmallboxError as e:
        problems.add(f"arms.{arm.name}.model", str(e))


# ---------------------------------------------------------------------------------------------
# Small typed readers


def _mapping(value, key: str, problems: Problems) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping, got {value!r}")
        return {}
    return dict(value)


def _no_runner_args(args: dict, key: str, problems: Problems) -> None:
    for k in sorted(set(args) & RUNNER_ARGS):
        why = ("every run's seed is the matrix's `seeds:`; a fixed seed here would train every 'seed' alike"
               if k == "seed" else "the runner sets it for every run")
        problems.add(f"{key}.{k}", f"not allowed: {why}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value, key: str, problems: Problems, low=None, high=None, low_open=False):
    if not _is_number(value):
        problems.add(key, f"must be a finite number, got {value!r}")
        return value
    if low is not None and (value < low or (low_open and value == low)):
        problems.add(key, f"must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        problems.add(key, f"must be <= {high:g}, got {value!r}")
    return value


def _dependency_order(arms: dict[str, Arm], chosen: list[str]) -> list[str]:
    """``chosen`` with every arm after the arms it depends on (which are added when missing)."""
    out: list[str] = []

    def visit(name, stack=()):
        if name in out:
            return
        if name in stack:
            raise SmallboxError(f"arms depend on each other in a loop: {' -> '.join((*stack, name))}")
        for dep in arms[name].depends_on:
            if dep in arms:
                visit(dep, (*stack, name))
        out.append(name)

    for name in chosen:
        visit(name)
    return out
