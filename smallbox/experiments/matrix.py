"""The experiment matrix: a YAML file of arms x seeds (``experiments/deeppcb.yaml``)::

    name: deeppcb                 # the ledger folder: LEDGER/<name>/<arm>/seed<k>/
    scale: gpu                    # recorded in every entry: gpu | cpu
    data:                         # COCO jsons + image folder, relative to the current folder
      train: data/deeppcb/annotations/train-full.json
      val: data/deeppcb/annotations/val.json
      images: data/deeppcb/images
      splits: [small:0:32^2]      # per-area splits for specialists (smallbox convert --split)
    seeds: [0, 1, 2]
    baseline: baseline            # the arm every other arm is compared with
    defaults:                     # Ultralytics train arguments of every arm
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
        split: small              # trains on data-small.yaml, scored on the full val split
        fuse_with: baseline       # also scored fused (WBF) with that arm's run of the same seed
      exp2-ft-1024:
        init_from: baseline       # fine-tunes that arm's best.pt of the same seed
        args: {imgsz: 1024, epochs: 20}

Every arm's settings resolve to one dict of Ultralytics arguments; the entry records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import read_yaml

ARM_KEYS = {"model", "args", "about", "pretrained", "split", "fuse_with", "init_from", "estimate_minutes"}
TOP_KEYS = {"name", "scale", "data", "seeds", "baseline", "defaults", "evaluation", "arms", "about", "fitness",
            "keep_weights_mb"}
DEFAULT_EVALUATION = {"conf": 0.001, "iou": 0.7, "max_det": 100}


@dataclass
class Arm:
    """One arm of the matrix: what is trained and how."""

    name: str
    model: str
    args: dict
    about: str = ""
    pretrained: str | None = None
    split: str | None = None
    fuse_with: str | None = None
    init_from: str | None = None
    estimate_minutes: float | None = None

    @property
    def depends_on(self) -> list[str]:
        return [a for a in (self.fuse_with, self.init_from) if a]


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

    def resolved(self, base) -> "Matrix":
        """A copy with the data paths and model files absolute (relative ones are taken from
        ``base``), so runs started anywhere (a Ray worker) find them."""
        base = Path(base)

        def absolute(value):
            return str((base / value).resolve()) if value and not Path(str(value)).is_absolute() else value

        data = {k: absolute(v) if k in ("train", "val", "images") else v for k, v in self.data.items()}
        def existing(value):  # a bare `yolov8n.yaml` is Ultralytics' own, not a file here
            return absolute(value) if value and (base / str(value)).exists() else value

        arms = {n: replace(a, model=existing(a.model), pretrained=existing(a.pretrained)) for n, a in self.arms.items()}
        return replace(self, data=data, arms=arms)

    def pairs(self, only=None) -> list[tuple[str, int]]:
        """Every (arm, seed), arms in the file's order (dependencies first), seeds ascending."""
        arms = [a for a in self.arms if not only or a in only]
        return [(a, s) for s in self.seeds for a in _dependency_order(self.arms, arms)]


def load_matrix(path) -> Matrix:
    """Read and check a matrix file; unknown keys and dangling arm references are errors."""
    path = Path(path)
    raw = read_yaml(path, "matrix file")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise SmallboxError(f"{path}: unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    for key in ("name", "data", "seeds", "arms"):
        if key not in raw:
            raise SmallboxError(f"{path}: needs `{key}:`")
    data = raw["data"]
    if not isinstance(data, dict) or not all(data.get(k) for k in ("train", "val", "images")):
        raise SmallboxError(f"{path}: data needs train, val (COCO jsons) and images (their folder)")
    defaults = dict(raw.get("defaults") or {})
    arms = {name: _arm(path, name, spec, defaults) for name, spec in (raw["arms"] or {}).items()}
    baseline = raw.get("baseline", next(iter(arms), None))
    for arm in arms.values():
        for ref in arm.depends_on:
            if ref not in arms:
                raise SmallboxError(f"{path}: arm {arm.name!r} refers to unknown arm {ref!r}")
        if arm.split and arm.split not in [str(s).split(":")[0] for s in data.get("splits", [])]:
            raise SmallboxError(f"{path}: arm {arm.name!r} trains on split {arm.split!r}, which data.splits does not make")
    if baseline not in arms:
        raise SmallboxError(f"{path}: baseline {baseline!r} is not an arm")
    seeds = [int(s) for s in raw["seeds"]]
    return Matrix(path, str(raw["name"]), str(raw.get("scale", "gpu")), data, seeds, baseline, arms,
                  {**DEFAULT_EVALUATION, **(raw.get("evaluation") or {})}, str(raw.get("fitness", "coco/AP")),
                  float(raw.get("keep_weights_mb", 8.0)), str(raw.get("about", "")))


def _arm(path: Path, name: str, spec, defaults: dict) -> Arm:
    if not isinstance(spec, dict):
        raise SmallboxError(f"{path}: arm {name!r} must be a mapping (model, args, ...)")
    unknown = set(spec) - ARM_KEYS
    if unknown:
        raise SmallboxError(f"{path}: arm {name!r}: unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(ARM_KEYS))})")
    if not spec.get("model") and not spec.get("init_from"):
        raise SmallboxError(f"{path}: arm {name!r} needs model: (a model YAML or local .pt) or init_from: (an arm)")
    return Arm(name, str(spec.get("model") or ""), {**defaults, **(spec.get("args") or {})}, str(spec.get("about", "")),
               spec.get("pretrained"), spec.get("split"), spec.get("fuse_with"), spec.get("init_from"),
               spec.get("estimate_minutes"))


def _dependency_order(arms: dict[str, Arm], chosen: list[str]) -> list[str]:
    """``chosen`` with every arm after the arms it depends on (which are added when missing)."""
    out: list[str] = []

    def visit(name, stack=()):
        if name in out:
            return
        if name in stack:
            raise SmallboxError(f"arms depend on each other in a loop: {' -> '.join((*stack, name))}")
        for dep in arms[name].depends_on:
            visit(dep, (*stack, name))
        out.append(name)

    for name in chosen:
        visit(name)
    return out
