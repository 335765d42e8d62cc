"""``smallbox yolo MODE key=value ...``: the ``yolo`` CLI, with smallbox's parts registered.

Exactly the syntax of Ultralytics' ``yolo`` (``cfg=recipe.yaml`` included). Before handing over
to ``ultralytics.cfg.entrypoint()`` it sets the offline defaults, checks the arguments that name
files (so a typo fails in a second, with exit 2 and nothing written), puts runs under the current
folder, registers smallbox's model layers and points the detect task at smallbox's trainer,
validator, predictor and model. smallbox's own settings travel outside the argument list (the
``yolo`` CLI rejects unknown keys): in the data YAML written by ``smallbox convert``, and in two
environment variables, ``SMALLBOX_FITNESS`` (best-model metric) and ``SMALLBOX_IMAGE_IDS`` (image
ids of a predict run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import SmallboxError
from ..offline import apply_offline_defaults

# Arguments that name a weights file the run reads: offline, a missing one is a plain error.
WEIGHT_KEYS = ("model", "pretrained", "resume")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
RUN_MODES = ("train", "val", "predict", "export", "track", "benchmark")
DEFAULT_RUNS = "runs"

HELP = """usage: smallbox yolo MODE [key=value ...]      (MODE: train, val, predict, export, ...)

The `yolo` command of Ultralytics with smallbox inside; every `yolo` argument works as there
(`yolo cfg` lists them). What smallbox adds:
  train/val   COCO AP / AR by size against the ORIGINAL json every epoch (results.csv columns
              coco/AP ... coco/AP_small ..., fit/AP_small ... for the data's fitted buckets), on a
              dataset written by `smallbox convert`; predictions.json / .csv with the original ids
  predict     predictions.json (original ids: SMALLBOX_IMAGE_IDS=test.json, a converted split
              folder, else 1..N by file name + images.json) and the competition CSV
  model=      model YAMLs with timm backbones (TimmBackbone), `base:` files and a size-weighted
              box loss (size_weighting:); pretrained=FILE loads local timm weights into the backbone
  offline     nothing is downloaded: model= must be a local .pt or a model YAML
  runs        under ./runs/<task>/ unless project= says otherwise (a relative project= is taken
              from the current folder)
environment:
  SMALLBOX_FITNESS=coco/AP_small   results.csv column that picks best.pt (default: Ultralytics' fitness)
  SMALLBOX_IMAGE_IDS=test.json     image ids of a predict run (matched by file name)
examples (bundled data; recipes/ holds the report's recipes and model YAMLs):
  smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \\
      --val data/deeppcb/annotations/val.json --out runs/data/deeppcb
  smallbox yolo train model=recipes/models/csp-yolov8s.yaml data=runs/data/deeppcb/data.yaml imgsz=640 epochs=60
  smallbox yolo val model=runs/detect/train/weights/best.pt data=runs/data/deeppcb/data.yaml
  smallbox yolo predict model=runs/detect/train/weights/best.pt source=runs/data/deeppcb/images/val conf=0.001
More: docs/yolo.md, docs/adapters.md."""


def run_argv(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    apply_offline_defaults()  # before Ultralytics is imported anywhere
    args = effective_args(argv)
    mode = next((a for a in argv if a in RUN_MODES), None)
    check_arguments(args, mode)
    argv = with_local_project(argv, args)
    from ultralytics.cfg import entrypoint

    from ..adapters.yolo.register import register

    register()
    saved = sys.argv[:]
    # entrypoint() parses Ultralytics' ARGV, which is sys.argv itself: replace its items in place.
    sys.argv[:] = ["yolo", *argv]
    try:
        entrypoint()
    except SyntaxError as e:  # Ultralytics' message for an unknown or malformed argument
        print(f"smallbox yolo: error: {e}", file=sys.stderr)
        return 2
    finally:
        sys.argv[:] = saved
    return 0


def effective_args(argv: list[str]) -> dict:
    """The ``key=value`` arguments, over those of ``cfg=recipe.yaml`` when one is given."""
    args = _key_values(argv)
    if args.get("cfg"):
        import yaml

        try:
            recipe = yaml.safe_load(Path(args["cfg"]).read_text(encoding="utf-8")) or {}
        except OSError:
            raise SmallboxError(f"cfg={args['cfg']}: no such file") from None
        except yaml.YAMLError as e:
            raise SmallboxError(f"cfg={args['cfg']}: not valid YAML ({e})") from None
        args = {**(recipe if isinstance(recipe, dict) else {}), **args}
    return args


def check_arguments(args: dict, mode: str | None) -> None:
    """Everything that can be checked before Ultralytics starts: the model and weight files, the
    data YAML (a COCO json is the common slip), the predict source, SMALLBOX_FITNESS."""
    if mode and not args.get("model") and not args.get("resume"):
        raise SmallboxError(f"`smallbox yolo {mode}` needs model= (a local .pt, or a model YAML such as "
                            "yolo11n.yaml or recipes/models/yolo-tiny.yaml for random weights): nothing is downloaded")
    _check_data(str(args.get("data") or ""))
    for key in WEIGHT_KEYS:
        value = str(args.get(key) or "")
        if value.lower() in ("", "true", "false", "none") or (key == "model" and not value.endswith(WEIGHT_SUFFIXES)):
            continue
        if not _find_weights(value):
            raise SmallboxError(f"{key}={value}: no such weights file (smallbox runs offline: give a local path"
                                + (", or a model YAML such as yolo11n.yaml to start from random weights)" if key == "model"
                                   else "; relative paths are also looked up in $SMALLBOX_WEIGHTS_DIR)"))
    if mode == "predict":
        _check_source(args.get("source"))
    if mode in ("train", "val") and args.get("data"):
        _check_fitness(str(args["data"]))


def _check_data(data: str) -> None:
    if data.endswith((".json", ".json.gz")):
        raise SmallboxError(f"data={data} is a COCO json; `smallbox yolo` trains on a dataset YAML. Convert it once: "
                            f"smallbox convert {data} --images IMAGES_DIR --out DATASET_DIR, then data=DATASET_DIR/data.yaml")
    if data.endswith((".yaml", ".yml")) and ("/" in data or "\\" in data) and not Path(data).expanduser().is_file():
        raise SmallboxError(f"data={data}: no such file (write a dataset with `smallbox convert ... --out DIR`, then data=DIR/data.yaml)")


def _check_source(source) -> None:
    """A folder or file that Ultralytics would fail on (or predict nothing from) is an error now."""
    if source is None or str(source).isdigit() or "://" in str(source) or "*" in str(source):
        return
    path = Path(str(source)).expanduser()
    if not path.exists():
        raise SmallboxError(f"source={source}: no such file or folder")
    if path.is_dir():
        from ..datasets.imagefiles import IMAGE_SUFFIXES, list_images

        if not list_images(path):
            raise SmallboxError(f"source={source}: no images in this folder (Ultralytics reads files directly in it "
                                f"with suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")


def _check_fitness(data: str) -> None:
    """A misspelled SMALLBOX_FITNESS fails before the dataset scan, naming the columns it may be."""
    from ..callbacks.coco_metrics import FITNESS_ENV, fitness_column, metric_columns
    from ..datasets.manifest import dataset_section, read_data_yaml

    if not os.environ.get(FITNESS_ENV) or not data.endswith((".yaml", ".yml")) or not Path(data).is_file():
        return
    parsed = read_data_yaml(data)
    section = dataset_section(parsed, data)
    if section is None:
        raise SmallboxError(f"${FITNESS_ENV}={os.environ[FITNESS_ENV]}: {data} has no `smallbox:` section, so there are "
                            "no COCO columns to pick best.pt by (write the dataset with smallbox convert)")
    fitness_column({**parsed, "yaml_file": data}, metric_columns(section.buckets))


def with_local_project(argv: list[str], args: dict) -> list[str]:
    """Runs go under the current folder: no ``project=`` -> ``./runs/<task>``; a relative one ->
    ``./<project>`` (Ultralytics would put both under its global ``runs_dir`` setting, which may
    be another checkout's). A resumed run keeps its own folder."""
    if args.get("resume") not in (None, "", "False", "false", False) or args.get("save_dir"):
        return argv
    project = args.get("project")
    if project and Path(str(project)).expanduser().is_absolute():
        return argv
    folder = Path.cwd() / (str(project) if project else f"{DEFAULT_RUNS}/{args.get('task') or 'detect'}")
    return [a for a in argv if not a.lstrip("-").startswith("project=")] + [f"project={folder}"]


def _find_weights(value: str) -> bool:
    from ..adapters.timm_features import find_weights_file

    return find_weights_file(value) is not None


def _key_values(argv: list[str]) -> dict[str, str]:
    pairs = {}
    for arg in argv:
        key, sep, value = arg.lstrip("-").partition("=")
        if sep:
            pairs[key] = value
    return pairs
