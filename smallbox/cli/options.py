"""Checks of command-line values shared by the commands, run before any work: output paths, numbers
in range, devices, checkpoint files. Each raises :class:`~smallbox.errors.SmallboxError` naming the
option, or works as an argparse ``type=`` (argparse then prints the usage and exits 2)."""

from __future__ import annotations

import argparse
import math
import os
import zipfile
from pathlib import Path

from ..errors import SmallboxError


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the help already speaks of its default or
    there is nothing to say (no value, an off switch, an empty list, a shared ``dest``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default == []
        if nothing or "default" in text or isinstance(action, argparse._StoreConstAction) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


def output_file(value: str) -> str:
    """argparse type of a file the command writes: not a folder, and its folder can be made."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder; give a file name (e.g. {Path(value) / 'out.json'})")
    _check_creatable(path.parent, value)
    return value


def output_folder(value: str) -> str:
    """argparse type of a folder the command writes into: a folder, or one that can be made."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, not a folder")
    _check_creatable(path, value)
    return value


def check_output(value, key: str, folder: bool = False) -> None:
    """:func:`output_file` / :func:`output_folder` for a ``key=value`` setting: SmallboxError."""
    try:
        (output_folder if folder else output_file)(str(value))
    except argparse.ArgumentTypeError as e:
        raise SmallboxError(f"{key}={value}: {e}") from None


def _check_creatable(folder: Path, value: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder this user may write in."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value}: no permission to write in {existing}")


def number(kind, low=None, high=None, low_open: bool = False):
    """argparse type: ``kind`` (int or float) with ``low <= x`` (``low < x`` when ``low_open``)
    and ``x <= high``."""

    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(x):  # nan passes every comparison; inf is no limit the user can mean
            raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
        too_low = low is not None and (x <= low if low_open else x < low)
        if too_low or (high is not None and x > high):
            raise argparse.ArgumentTypeError(f"{text}: must be {_range_text(low, high, low_open)}")
        return x

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _range_text(low, high, low_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"<= {high}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


def check_device(device, key: str = "device") -> None:
    """A CUDA device that is not there (``0``, ``0,1``, ``cuda``, ``cuda:1``) or a name torch does
    not know is an error now, not a RuntimeError once the model is built."""
    text = str(device if device is not None else "").strip().strip("[]()").replace(" ", "").lower()  # [0, 1] as 0,1
    if text in ("", "auto", "cpu", "mps", "none", "-1"):
        return
    import torch

    parts = [p.strip() for p in text.removeprefix("cuda:").split(",")] if text != "cuda" else ["0"]
    if not all(p.isdigit() for p in parts):
        try:
            torch.device(text)
        except RuntimeError:
            raise SmallboxError(f"{key}={device}: not a device (use cpu, cuda, cuda:0, 0 or 0,1)") from None
        return
    count = torch.cuda.device_count()
    missing = [p for p in parts if int(p) >= count]
    if missing:
        raise SmallboxError(f"{key}={device}: this machine has {count or 'no'} CUDA device(s) visible to torch "
                            f"{torch.__version__}; use {key}=cpu" + (f" or device numbers below {count}" if count else ""))


def checkpoint_kind(path) -> str:
    """What a ``.pt`` file holds, from its pickle's names without loading it: ``"ultralytics"`` (a
    YOLO checkpoint), ``"tv"`` (a ``smallbox tv`` checkpoint) or ``"other"``.

    Raises:
        SmallboxError: no such file, a folder, or not a file written by ``torch.save``.
    """
    path = Path(path)
    if path.is_dir():
        best = next((p for p in (path / "weights" / "best.pt", path / "best.pt") if p.is_file()), None)
        raise SmallboxError(f"{path}: is a folder, not a checkpoint file" + (f" (a run folder: give {best})" if best else ""))
    if not path.is_file():
        raise SmallboxError(f"{path}: no such checkpoint file (nothing is downloaded)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickle_name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            names = archive.read(pickle_name)
    except (zipfile.BadZipFile, StopIteration, OSError):
        raise SmallboxError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive with data.pkl)") from None
    if b"ultralytics" in names:
        return "ultralytics"
    return "tv" if b"recipe" in names and b"classes" in names else "other"


AREAS_HELP = ("size ranges: coco (default), aitod (AI-TOD's verytiny/tiny/small/medium and 1500 detections), fit or fit:K "
              "(K ranges at quantiles of the boxes; for a converted dataset's json, those recorded by smallbox convert), "
              "thresholds A,B,... in px² (8^2,16^2,32^2,64^2: five ranges) or named ranges NAME=LO:HI,... "
              "(vt=0:8^2,t=8^2:16^2,s=16^2:32^2)")


def add_size_options(p, areas_default: str = "coco", max_dets: bool = True) -> None:
    """``--areas`` (one definition of size for every command) and ``--max-dets``."""
    p.add_argument("--areas", default=areas_default, help=AREAS_HELP)
    if max_dets:
        p.add_argument("--max-dets", type=number(int, 1), default=None, metavar="N",
                       help="detections per image and class that count (COCO's 100; aitod: 1500); an image with more "
                            "is cut to its N best, and the command says how many boxes that drops")


def max_dets_for(args) -> int:
    """``--max-dets``, else the ``--areas`` preset's (aitod: 1500), else COCO's 100."""
    from ..datasets.buckets import PRESET_MAX_DETS

    given = getattr(args, "max_dets", None)
    return given if given else PRESET_MAX_DETS.get(str(getattr(args, "areas", "")).strip(), 100)


def refuse_output_onto_inputs(outputs, inputs, command: str) -> None:
    """No command writes over a file it reads: any of ``outputs`` that is one of ``inputs`` (the
    same path, or the same file by another name) is an error naming both, before any work."""
    def same(a: Path, b: Path) -> bool:
        if a.resolve() == b.resolve():
            return True
        try:
            return a.exists() and b.exists() and os.path.samefile(a, b)
        except OSError:
            return False

    for out in (Path(str(o)) for o in outputs if o):
        for inp in (Path(str(i)) for i in inputs if i):
            if same(out, inp):
                raise SmallboxError(f"{command}: the output {out} is the input {inp}: it would be overwritten; "
                                    "write the result elsewhere")
