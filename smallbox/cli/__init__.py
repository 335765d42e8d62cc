"""The ``smallbox`` command. Each subcommand is a module of this package exposing
``add_arguments(parser)`` and ``run(args) -> int``; ``yolo`` and ``tv`` take their own argv
(``run_argv(argv) -> int``) because they keep Ultralytics' ``key=value`` syntax.

Exit codes: 0 done, 2 bad input (a :class:`SmallboxError`, an argparse error, or a file that cannot
be read or written: the message names it, without a traceback), 130 interrupted."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from ..errors import SmallboxError
from ..offline import apply_offline_defaults
from .options import DefaultsHelpFormatter

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
    "significance": ("significance", "is B better than A? a t test over seeds widened by a paired image bootstrap; seeds needed (--plan)"),
    "compare": ("compare", "what one model finds and the other misses, per size bucket, with crops"),
    "errors": ("errors", "why boxes are missed: TIDE's error types as ΔAP50 per size range, confusion matrices"),
    "experiments": ("experiments", "run an experiment matrix (arms x seeds) into a ledger, within a time budget"),
}
RAW_ARGV = {"yolo", "tv"}
# Errors of the machine, not of a path the user named: still the user's to fix.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smallbox", description="Make small objects detectable and measurable.")
    parser.add_argument("--version", action="version", version=f"smallbox {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def _command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"smallbox {_version()}")
        return 0
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
    quiet_progress_when_logged()
    try:
        module = _command_module(name)
        if name in RAW_ARGV:
            return int(module.run_argv(rest) or 0)
        parser = argparse.ArgumentParser(prog=f"smallbox {name}", description=COMMANDS[name][1],
                                         formatter_class=DefaultsHelpFormatter)
        module.add_arguments(parser)
        return int(module.run(parser.parse_args(rest)) or 0)
    except SmallboxError as e:
        print(f"smallbox {name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not (e.filename or e.filename2 or e.errno in ENVIRONMENT_ERRNOS):  # a bug: keep the traceback
            raise
        print(f"smallbox {name}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def quiet_progress_when_logged() -> None:
    """Into a log (not a terminal) a progress bar prints a line per update: thousands of lines.
    There, tqdm redraws at most every 30 s (its TQDM_MININTERVAL default; a user's own wins)."""
    import os

    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def describe_os_error(e: OSError) -> str:
    """``path: what is wrong`` for a file that could not be read or written (a permission, a full
    disk, a file where a folder should be); of a rename, the target's name."""
    path = e.filename2 or e.filename
    if path is None:
        return str(e.strerror or e)
    if e.errno in (errno.EEXIST, errno.ENOTDIR) and e.filename2 is None:
        return f"{path}: a file is in the way where a folder is needed"
    return f"{path}: {e.strerror or e}"


def entrypoint():
    sys.exit(main())
