"""``smallbox yolo MODE key=value ...``: the ``yolo`` CLI, with smallbox's parts registered.

Exactly the syntax of Ultralytics' ``yolo`` (``cfg=recipe.yaml`` included). Before handing over
to ``ultralytics.cfg.entrypoint()`` it sets the offline defaults, registers smallbox's model
layers and points the detect task at smallbox's trainer, validator, predictor and model.
smallbox's own settings travel outside the argument list (the ``yolo`` CLI rejects unknown
keys): in the data YAML written by ``smallbox convert``, and in two environment variables,
``SMALLBOX_FITNESS`` (best-model metric) and ``SMALLBOX_IMAGE_IDS`` (image ids of a predict run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..datasets.errors import SmallboxError
from ..offline import apply_offline_defaults

# Arguments that name a weights file the run reads: offline, a missing one is a plain error.
WEIGHT_KEYS = ("model", "pretrained", "resume")
RUN_MODES = ("train", "val", "predict", "export", "track", "benchmark")


def run_argv(argv: list[str]) -> int:
    apply_offline_defaults()  # before Ultralytics is imported anywhere
    check_weight_files(argv)
    from ultralytics.cfg import entrypoint

    from ..adapters.register import register_modules
    from ..adapters.yolo_trainer import use_smallbox_classes

    register_modules()
    use_smallbox_classes()
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


def check_weight_files(argv: list[str]) -> None:
    """``model=x.pt`` (or ``pretrained=``/``resume=``), on the command line or in ``cfg=``, must be
    a local file, and a run must name its model: offline, Ultralytics' default (``yolo26n.pt``,
    downloaded) is not there. A ``data=`` path to a YAML must exist (bare names such as
    ``coco8.yaml`` are Ultralytics' own and left to it)."""
    args = _key_values(argv)
    if args.get("cfg"):
        import yaml

        try:
            recipe = yaml.safe_load(Path(args["cfg"]).read_text(encoding="utf-8")) or {}
        except OSError:
            raise SmallboxError(f"cfg={args['cfg']}: no such file") from None
        args = {**(recipe if isinstance(recipe, dict) else {}), **args}
    mode = next((a for a in argv if a in RUN_MODES), None)
    if mode and not args.get("model") and not args.get("resume"):
        raise SmallboxError(f"`smallbox yolo {mode}` needs model= (a local .pt, or a model YAML such as "
                            "yolo11n.yaml or recipes/models/yolo-tiny.yaml for random weights): nothing is downloaded")
    data = str(args.get("data") or "")
    if data.endswith((".yaml", ".yml")) and ("/" in data or "\\" in data) and not Path(data).expanduser().is_file():
        raise SmallboxError(f"data={data}: no such file (write a dataset with `smallbox convert ... --out DIR`, then data=DIR/data.yaml)")
    for key in WEIGHT_KEYS:
        value = str(args.get(key) or "")
        if value.endswith(".pt") and not Path(value).expanduser().is_file():
            raise SmallboxError(f"{key}={value}: no such weights file (smallbox runs offline: give a local path, "
                                "or a model YAML such as yolo11n.yaml to start from random weights)")


def _key_values(argv: list[str]) -> dict[str, str]:
    pairs = {}
    for arg in argv:
        key, sep, value = arg.lstrip("-").partition("=")
        if sep:
            pairs[key] = value
    return pairs
