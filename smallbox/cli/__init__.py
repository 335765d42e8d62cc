"""The ``smallbox`` command. Each subcommand is a module of this package exposing
``add_arguments(parser)`` and ``run(args) -> int``; ``yolo`` and ``tv`` take their own argv
(``run_argv(argv) -> int``) because they keep Ultralytics' ``key=value`` syntax."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SmallboxError
from ..offline import apply_offline_defaults

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `smallbox eval` never pays for importing torch.
COMMANDS = {
    "eda": ("eda", "box-size analysis of a COCO json: histograms, bucket counts, fitted thresholds"),
    "fix": ("fix", "repair a COCO json (duplicate ids, boxes a pixel outside, zero-size boxes, ...) with a change log"),
    "convert": ("convert", "COCO json -> Ultralytics YOLO dataset with id maps and per-area splits"),
    "eval": ("eval", "COCO AP / AR by size (COCO's and custom/fitted ranges) of a predictions file"),
    "yolo": ("yolo", "the `yolo` CLI (train/val/predict ...) with smallbox's trainer, validator and modules"),
    "tv": ("tv", "torchvision Faster R-CNN / RetinaNet: train, eval, predict"),
    "ensemble": ("ensemble", "fuse prediction files (wbf, nms, soft-nms, nmw), optionally size-gated"),
    "slice": ("slice", "sliced (tiled) inference of a YOLO or torchvision model"),
    "report": ("report", "one table over training runs, seeds grouped into mean ± std"),
    "significance": ("significance", "is B better than A? two-level bootstrap over runs and images"),
    "compare": ("compare", "what one model finds and the other misses, per size bucket, with crops"),
}
RAW_ARGV = {"yolo", "tv"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smallbox", description="Make small objects detectable and measurable.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"smallbox: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    # Before any command imports Ultralytics, timm or albumentations: nothing may reach the network.
    apply_offline_defaults()
    try:
        module = _command_module(name)
        if name in RAW_ARGV:
            return int(module.run_argv(rest) or 0)
        parser = argparse.ArgumentParser(prog=f"smallbox {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        return int(module.run(parser.parse_args(rest)) or 0)
    except SmallboxError as e:
        print(f"smallbox {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entrypoint():
    sys.exit(main())
