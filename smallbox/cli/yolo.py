"""``smallbox yolo MODE key=value ...``: the ``yolo`` CLI, with smallbox's parts registered.

Exactly the syntax of Ultralytics' ``yolo`` (``cfg=recipe.yaml`` included), plus ``--show`` (what
a recipe changes, without running). Before handing over to ``ultralytics.cfg.entrypoint()`` it sets
the offline defaults, checks the arguments (the files they name, setting values, the device, the
output folder: a typo fails in a second, with exit 2 and nothing written), puts runs under the current
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
from .options import check_device, check_output, checkpoint_kind

# predict: an image of the source folder that cannot be decoded is an error naming it, unless the
# user asks to skip such images (every other image keeps its id: ids never depend on readability).
SKIP_UNREADABLE_FLAG = "--skip-unreadable"
SKIP_UNREADABLE_ENV = "SMALLBOX_SKIP_UNREADABLE"
# Arguments that name a weights file the run reads: offline, a missing one is a plain error.
WEIGHT_KEYS = ("model", "pretrained", "resume")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
RUN_MODES = ("train", "val", "predict", "export", "track", "benchmark")
DEFAULT_RUNS = "runs"
# Folders Ultralytics' exporters write (yolo11n_openvino_model/, _saved_model/, ...): a model= folder.
EXPORT_FOLDER_SUFFIX = "_model"
VIDEO_SUFFIXES = (".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv", ".webm")

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
  --show      print what a recipe changes (each setting that differs from Ultralytics' default, with
              both values) and, for a model YAML, the model with its `base:` merged in; runs nothing
environment:
  SMALLBOX_FITNESS=coco/AP_small   results.csv column that picks best.pt (default: Ultralytics' fitness)
  SMALLBOX_IMAGE_IDS=test.json     image ids of a predict run (matched by file name)
examples (bundled data; recipes/ holds the report's recipes and model YAMLs):
  smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \\
      --val data/deeppcb/annotations/val.json --out runs/data/deeppcb
  smallbox yolo train model=recipes/models/csp-yolov8s.yaml data=runs/data/deeppcb/data.yaml imgsz=640 epochs=60
  smallbox yolo val model=runs/detect/train/weights/best.pt data=runs/data/deeppcb/data.yaml
  smallbox yolo predict model=runs/detect/train/weights/best.pt source=runs/data/deeppcb/images/val conf=0.001
  smallbox yolo cfg=recipes/exp2-mosaic-80-20.yaml model=recipes/models/swin-s-yolo.yaml --show
More: docs/yolo.md, docs/adapters.md."""


def run_argv(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    apply_offline_defaults()  # before Ultralytics is imported anywhere
    if "--show" in argv:
        print(show_settings([a for a in argv if a != "--show"]))
        return 0
    skip = SKIP_UNREADABLE_FLAG in argv
    argv = [a for a in argv if a != SKIP_UNREADABLE_FLAG]
    os.environ[SKIP_UNREADABLE_ENV] = "1" if skip else "0"  # read by the predictor (same process)
    args = effective_args(argv)
    check_arguments(args, run_mode(argv, args))
    argv = with_local_project(argv, args)
    from ultralytics.cfg import entrypoint

    from ..adapters.yolo.register import register

    register()
    saved = sys.argv[:]
    # entrypoint() parses Ultralytics' ARGV, which is sys.argv itself: replace its items in place.
    sys.argv[:] = ["yolo", *argv]
    try:
        entrypoint()
    except (SyntaxError, FileNotFoundError) as e:  # Ultralytics' messages: an unknown argument, a missing file
        print(f"smallbox yolo: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional package of some format or feature (auto-install is off)
        print(f"smallbox yolo: error: {e.name or e} is needed here and is not installed (pip install {e.name or '...'})",
              file=sys.stderr)
        return 2
    finally:
        sys.argv[:] = saved
    return 0


def show_settings(argv: list[str]) -> str:
    """What a run would change: each setting of the recipe (``cfg=``) and the command line that
    differs from Ultralytics' default, with both values and where it was set; then a model YAML
    as the trainer builds it (``base:`` merged in)."""
    import ultralytics
    from ultralytics.cfg import DEFAULT_CFG_DICT, smart_value

    command_line = _key_values(argv)
    args = effective_args(argv)
    rows, same = [("setting", "value", "default", "set by")], 0
    for key, value in args.items():
        value = smart_value(value) if key in command_line and key not in ("project", "name") else value
        if key == "cfg" or (key in DEFAULT_CFG_DICT and value == DEFAULT_CFG_DICT[key]):
            same += key != "cfg"
            continue
        rows.append((key, str(value), str(DEFAULT_CFG_DICT.get(key, "(not a setting)")),
                     "command line" if key in command_line else args["cfg"]))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    lines = [f"settings that differ from Ultralytics' defaults (ultralytics {ultralytics.__version__}, cfg/default.yaml):"]
    lines += ["  " + "".join(c.ljust(w) for c, w in zip(r, widths)) + r[3] for r in rows]
    if same:
        lines.append(f"  ({same} more given, equal to the default)")
    model = str(args.get("model") or "")
    if model.endswith((".yaml", ".yml")):
        lines += ["", f"model {model} as the trainer builds it (`base:` merged in; nc comes from the data):",
                  _model_text(_model_yaml(model))]
    return "\n".join(lines)


def _model_text(model: dict) -> str:
    """A model YAML dict written back as YAML, one layer a line."""
    import yaml

    def flow(value) -> str:
        # one line; a scalar's dump ends with the document end mark "..."
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip().removesuffix("\n...")

    lines = []
    for key, value in model.items():
        if key == "yaml_file" or value in ("", None):
            continue
        if isinstance(value, list) and all(isinstance(row, list) for row in value):
            lines += [f"{key}:"] + [f"  - {flow(row)}" for row in value]
        else:
            lines.append(f"{key}: {flow(value)}")
    return "\n".join(lines)


def effective_args(argv: list[str]) -> dict:
    """The ``key=value`` arguments, over those of ``cfg=recipe.yaml`` when one is given."""
    args = _key_values(argv)
    if args.get("cfg"):
        from ..fileio import read_yaml

        args = {**read_yaml(args["cfg"], "recipe (cfg=)", empty={}), **args}
    return args


def run_mode(argv: list[str], args: dict) -> str | None:
    """``train``, ``val``, ... as Ultralytics will read it (a bare word, ``mode=``, else its default
    ``train`` when only ``key=value`` arguments are given); None for its special commands
    (``yolo settings``, ``yolo checks`` ...), which are passed through unchecked."""
    mode = next((a for a in argv if a in RUN_MODES), None) or args.get("mode")
    if mode or any("=" not in a for a in argv):
        return mode
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return DEFAULT_CFG_DICT["mode"] if args else None


def check_arguments(args: dict, mode: str | None) -> None:
    """Everything that can be checked before Ultralytics starts: the model and weight files, the
    data YAML (a COCO json is the common slip), setting values, the device, the output folder, the
    predict source, SMALLBOX_FITNESS."""
    _check_keys(args)
    resume = str(args.get("resume", "")).lower() not in ("", "false", "none")
    if mode and not args.get("model") and not resume:
        raise SmallboxError(f"`smallbox yolo {mode}` needs model= (a local .pt, or a model YAML such as "
                            "yolo11n.yaml or recipes/models/yolo-tiny.yaml for random weights): nothing is downloaded")
    if mode == "train" and not args.get("data") and not resume:
        raise SmallboxError("`smallbox yolo train` needs data= (a data.yaml written by `smallbox convert ... --out DIR`): "
                            "Ultralytics' default dataset would be downloaded")
    _check_data(str(args.get("data") or ""))
    _check_weights(args)
    if mode:
        _check_values(args)
        check_device(args.get("device"))
        if args.get("project"):
            check_output(args["project"], "project", folder=True)
    if mode == "predict":
        _check_source(args.get("source"))
    if mode == "export":
        _check_export_packages(str(args.get("format") or "torchscript").lower())
    if mode in ("train", "val") and args.get("data"):
        _check_split(str(args["data"]), args.get("split") or "val", mode)
        _check_fitness(str(args["data"]))


def _check_data(data: str) -> None:
    if data.endswith((".json", ".json.gz")):
        raise SmallboxError(f"data={data} is a COCO json; `smallbox yolo` trains on a dataset YAML. Convert it once: "
                            f"smallbox convert {data} --images IMAGES_DIR --out DATASET_DIR, then data=DATASET_DIR/data.yaml")
    path = Path(data).expanduser()
    if data and not path.exists():
        raise SmallboxError(f"data={data}: no such file (write a dataset with `smallbox convert ... --out DIR`, "
                            "then data=DIR/data.yaml)")
    if data and path.is_file() and path.suffix not in (".yaml", ".yml"):
        raise SmallboxError(f"data={data}: not a dataset YAML (give the data.yaml written by `smallbox convert`)")


def check_model_value(value: str) -> None:
    """A ``model=`` value as ``smallbox yolo train`` would accept it (the experiment matrix checks
    its arms with this before any run starts)."""
    _check_weights({"model": value})


def _check_weights(args: dict) -> None:
    """model=, pretrained=, resume=: local files (a missing one is not downloaded); model= and
    resume= must be Ultralytics checkpoints, model YAMLs it can read, or exported models."""
    for key in WEIGHT_KEYS:
        value = str(args.get(key) or "")
        if value.lower() in ("", "true", "false", "none"):
            continue
        if key == "model" and not value.endswith(WEIGHT_SUFFIXES):
            _check_model_file(value)
            continue
        found = _find_weights(value)
        if not found:
            raise SmallboxError(f"{key}={value}: no such weights file (smallbox runs offline: give a local path"
                                + (", or a model YAML such as yolo11n.yaml to start from random weights)" if key == "model"
                                   else "; relative paths are also looked up in $SMALLBOX_WEIGHTS_DIR)"))
        if key == "pretrained":  # a backbone's state dict, read by the timm layer
            continue
        kind = checkpoint_kind(found)
        if kind == "tv":
            raise SmallboxError(f"{key}={value} is a `smallbox tv` checkpoint: use it with `smallbox tv eval/predict` "
                                "or `smallbox slice`")
        if kind != "ultralytics":
            raise SmallboxError(f"{key}={value}: not an Ultralytics checkpoint (a plain state dict? backbone weights "
                                "go to pretrained=)")


def _check_model_file(value: str) -> None:
    """A model YAML Ultralytics finds (a path, or one of its own by name) with its ``base:``
    chain; an exported model file or folder that exists."""
    path = Path(value).expanduser()
    if path.suffix in (".yaml", ".yml"):
        _model_yaml(value)
    elif path.is_dir() and not path.name.endswith(EXPORT_FOLDER_SUFFIX):
        checkpoint_kind(path)  # raises: a folder, naming best.pt if it is a run folder
    elif not path.exists():
        raise SmallboxError(f"model={value}: no such file (give a .pt, a model YAML or an exported model)")


def _model_yaml(value: str) -> dict:
    """The model YAML as smallbox's trainer builds it: Ultralytics' reading, ``base:`` merged."""
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    from ..adapters.yolo.model import resolve_base

    try:
        return resolve_base(yaml_model_load(value))
    except FileNotFoundError:
        raise SmallboxError(f"model={value}: no such model YAML (neither a file nor one of Ultralytics' own, "
                            "e.g. yolo11n.yaml)") from None
    except yaml.YAMLError as e:
        raise SmallboxError(f"model={value}: not valid YAML ({e})") from None


def _check_keys(args: dict) -> None:
    """An unknown key (of the command line or the recipe) first, with Ultralytics' own message and
    suggestions, before anything it names is looked at."""
    import logging

    from ultralytics.cfg import DEFAULT_CFG_DICT, check_dict_alignment
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # not its banner of `yolo` examples, which cannot run offline
    try:
        check_dict_alignment(DEFAULT_CFG_DICT, args)
    except SyntaxError as e:
        raise SmallboxError(str(e).strip()) from None
    finally:
        LOGGER.setLevel(level)


def _check_values(args: dict) -> None:
    """Ultralytics' own type and range checks of the settings (``epochs=-1``, ``lr0=abc``,
    ``imgsz=big``), run now instead of after the model is built."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, smart_value
    from ultralytics.utils.checks import check_imgsz

    values = {k: smart_value(v) if isinstance(v, str) and k not in ("project", "name") else v
              for k, v in args.items() if k in DEFAULT_CFG_DICT}
    try:
        check_cfg(values)
        if values.get("imgsz") is not None:
            check_imgsz(values["imgsz"])
    except (TypeError, ValueError) as e:
        raise SmallboxError(str(e).split("\n")[0]) from None


def _check_split(data: str, split: str, mode: str) -> None:
    """``split=test`` on a dataset without a test split fails now, naming the splits there are."""
    from ..datasets.manifest import read_data_yaml

    if not data.endswith((".yaml", ".yml")) or not Path(data).is_file():
        return
    parsed = read_data_yaml(data)
    wanted = ["train", "val"] if mode == "train" else [split]
    missing = [s for s in wanted if not parsed.get(s)]
    if missing:
        known = [s for s in ("train", "val", "test") if parsed.get(s)]
        raise SmallboxError(f"data={data} has no {missing[0]}: split (it has {', '.join(known) or 'none'})")


def _check_source(source) -> None:
    """A folder or file that Ultralytics would fail on (or predict nothing from) is an error now."""
    if source is None or str(source).isdigit() or "://" in str(source) or "*" in str(source):
        return
    path = Path(str(source)).expanduser()
    if not path.exists():
        raise SmallboxError(f"source={source}: no such file or folder")
    if path.is_file():
        _check_source_file(path, source)
    if path.is_dir():
        from ..datasets.imagefiles import IMAGE_SUFFIXES, list_images

        images = list_images(path)
        if not images:
            raise SmallboxError(f"source={source}: no images in this folder (Ultralytics reads files directly in it "
                                f"with suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
        unreadable = unreadable_images(images)
        if unreadable and os.environ.get(SKIP_UNREADABLE_ENV) != "1":
            raise SmallboxError(unreadable_message(unreadable, source))
        if len(unreadable) == len(images):
            raise SmallboxError(f"source={source}: none of its {len(images)} image(s) can be read")


# The packages an export format needs that smallbox's own dependencies do not bring; Ultralytics'
# auto-install is off (offline), so a missing one would end in its traceback.
EXPORT_PACKAGES = {"onnx": ("onnx",), "openvino": ("openvino",), "engine": ("tensorrt",), "coreml": ("coremltools",),
                   "tflite": ("tensorflow",), "saved_model": ("tensorflow",), "pb": ("tensorflow",),
                   "paddle": ("paddle",), "ncnn": ("ncnn",), "mnn": ("MNN",)}


def _check_export_packages(fmt: str) -> None:
    import importlib.util

    missing = [m for m in EXPORT_PACKAGES.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        how = "pip install 'smallbox[export]'" if fmt == "onnx" else f"pip install {' '.join(missing)}"
        raise SmallboxError(f"format={fmt} needs the {', '.join(missing)} package, which is not installed: {how}")


def unreadable_images(files) -> list[Path]:
    """The images whose header cannot be read (an empty file, text named .png, a broken header):
    checked before the run. A file whose pixels are cut short is found when it is decoded."""
    from ..datasets.imagefiles import image_size

    bad = []
    for f in files:
        try:
            if Path(f).stat().st_size == 0:
                raise SmallboxError("empty")
            image_size(f)
        except (SmallboxError, OSError, ValueError, SyntaxError):
            bad.append(Path(f))
    return bad


def unreadable_message(files, source) -> str:
    shown = ", ".join(Path(f).name for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (f"source={source}: {len(files)} image(s) cannot be read: {shown}. Fix or remove them, or add "
            f"{SKIP_UNREADABLE_FLAG} to predict the others (their ids stay those of the whole folder)")


def _check_source_file(path: Path, source) -> None:
    """An image, a video, or a .txt list of them (Ultralytics reads one path per line)."""
    from ..datasets.imagefiles import is_image_name

    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        missing = [line for line in lines if not Path(line).exists()]
        if not lines or missing:
            raise SmallboxError(f"source={source}: a .txt source lists image paths, one a line; "
                                + (f"{missing[0]!r} does not exist" if lines else "this one is empty"))
    elif not is_image_name(path.name) and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SmallboxError(f"source={source}: not an image or video Ultralytics reads")


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


def _find_weights(value: str):
    """The local file ``value`` names (also looked up in $SMALLBOX_WEIGHTS_DIR), or None."""
    from ..adapters.timm_features import find_weights_file

    return find_weights_file(value)


TASKS = ("detect", "segment", "classify", "pose", "obb")


def _key_values(argv: list[str]) -> dict[str, str]:
    """``key=value`` pairs; a bare word that is not a mode or task is a flag set to True, as
    Ultralytics reads it (``yolo train resume model=last.pt``)."""
    pairs = {}
    for arg in argv:
        key, sep, value = arg.lstrip("-").partition("=")
        if sep:
            pairs[key] = value
        elif key and key not in RUN_MODES and key not in TASKS and not arg.startswith("-"):
            pairs[key] = "True"
    return pairs
