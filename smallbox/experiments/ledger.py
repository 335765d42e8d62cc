"""The experiment ledger: one folder per finished run, written whole or not at all::

    LEDGER/<matrix name>/<arm>/seed<k>/
      entry.json            arm, seed, scale, settings, git commit, hardware, wall and CPU time,
                            images/s, the three data roles (train, select, report: path + SHA-1),
                            how the checkpoint was chosen, its metrics on the report split
                            (predict + smallbox eval)
      predictions.json.gz   the checkpoint's COCO results on the report split (original ids): any
                            later comparison is recomputed from it
      fused.json.gz         (specialist arms) the fusion with the arm it is fused with
      best.pt               the chosen checkpoint, when it fits the matrix's keep_weights_mb

A run that is cut off leaves no entry (the folder is assembled beside the ledger and renamed
into place), so the runner simply runs it again. An entry that is there but not whole (entry.json
cut short, its predictions deleted, or scored before the data roles existed) counts as not done:
``status`` and ``report`` name it, ``run`` moves it aside and runs the pair again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import atomic_folder, read_json, write_json_atomic

ENTRY = "entry.json"
ENTRY_KEYS = ("matrix", "arm", "seed", "scale", "settings", "data", "checkpoint", "metrics", "predictions")
PREDICTIONS = "predictions.json.gz"
FUSED = "fused.json.gz"
WEIGHTS = "best.pt"


@dataclass
class Entry:
    """A finished run of the ledger."""

    folder: Path
    data: dict

    @property
    def arm(self) -> str:
        return self.data["arm"]

    @property
    def seed(self) -> int:
        return int(self.data["seed"])

    @property
    def predictions(self) -> Path:
        return self.folder / PREDICTIONS

    @property
    def weights(self) -> Path | None:
        path = self.folder / WEIGHTS
        return path if path.is_file() else None

    @property
    def roles(self) -> dict:
        """``{"train": {...}, "select": {...} | "none", "report": {...}}`` as the entry records them
        (each json as ``{"path": relative to the entry folder, "sha1": ...}``)."""
        return self.data.get("data") or {}

    def role_path(self, role: str) -> Path | None:
        recorded = self.roles.get(role)
        if not isinstance(recorded, dict) or not recorded.get("path"):
            return None
        return self.folder / recorded["path"]

    @property
    def report(self) -> Path | None:
        """The json the run was scored on (its report split)."""
        return self.role_path("report")

    def report_mismatch(self) -> str | None:
        """Why the report json found now is not the one the run was scored on (None: it is)."""
        recorded, path = (self.roles.get("report") or {}).get("sha1"), self.report
        if recorded and path and path.is_file() and file_sha1(path) != recorded:
            return f"{os.path.normpath(path)} differs from the report json {self.arm} seed {self.seed} was scored on"
        return None

    @property
    def selected_by(self) -> str:
        return (self.data.get("checkpoint") or {}).get("selected_by", "")


def file_sha1(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def json_record(path, entry_folder: Path) -> dict:
    """How an entry records a json it used: the path relative to the entry folder (the ledger
    travels with a clone of the repository) and its SHA-1 (a json changed since is noticed)."""
    return {"path": os.path.relpath(Path(path).resolve(), Path(entry_folder).resolve()), "sha1": file_sha1(path)}


def entry_problem(folder: Path) -> str | None:
    """Why the entry folder is not a whole entry (None: it is)."""
    folder = Path(folder)
    try:
        data = read_json(folder / ENTRY)
    except SmallboxError as e:
        return str(e)
    if not isinstance(data, dict):
        return f"{folder / ENTRY}: not an entry (a json object)"
    missing = [k for k in ENTRY_KEYS if k not in data]
    if "data" in missing or not isinstance(data.get("data"), dict) or "report" not in data.get("data", {}):
        return (f"{folder / ENTRY}: scored before the data roles (train / select / report) were recorded: its "
                "checkpoint may have been picked on the split that scored it")
    if missing:
        return f"{folder / ENTRY}: lacks {', '.join(missing)}"
    files = [PREDICTIONS] + ([FUSED] if data.get("fused") else []) + ([WEIGHTS] if data.get("weights") else [])
    for name in files:
        if not (folder / name).is_file():
            return f"{folder / name}: missing (the entry names it)"
    for name in (PREDICTIONS, FUSED):
        if (folder / name).is_file() and not _gzip_whole(folder / name):
            return f"{folder / name}: cut short or not gzip"
    return None


def _gzip_whole(path: Path) -> bool:
    """A gzip file that decompresses to its end (a cut-off file fails its CRC or ends early)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
        return True
    except (OSError, EOFError):
        return False


class Ledger:
    """The entries of one matrix: ``root/<matrix name>/<arm>/seed<k>/``."""

    def __init__(self, root, matrix_name: str):
        self.root = Path(root)
        self.folder = self.root / matrix_name

    def entry_folder(self, arm: str, seed: int) -> Path:
        return self.folder / arm / f"seed{seed}"

    def has(self, arm: str, seed: int) -> bool:
        """Whether the ledger holds a whole entry of the pair."""
        folder = self.entry_folder(arm, seed)
        return folder.is_dir() and entry_problem(folder) is None

    def problem(self, arm: str, seed: int) -> str | None:
        """Why the pair's entry folder, which exists, is not a whole entry (None: absent or whole)."""
        folder = self.entry_folder(arm, seed)
        return entry_problem(folder) if folder.exists() else None

    def get(self, arm: str, seed: int) -> Entry | None:
        folder = self.entry_folder(arm, seed)
        return Entry(folder, read_json(folder / ENTRY)) if self.has(arm, seed) else None

    def set_aside(self, arm: str, seed: int) -> Path:
        """Move a pair's broken entry folder to a hidden one beside it (kept, never read), so the
        pair can run again."""
        folder = self.entry_folder(arm, seed)
        target = folder.parent / f".{folder.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.rename(target)
        return target

    def entries(self, skip_broken: bool = False) -> list[Entry]:
        """The whole entries of the matrix (a broken one is an error, or left out with ``skip_broken``)."""
        return read_entries(self.folder, [] if skip_broken else None) if self.folder.is_dir() else []

    def write(self, arm: str, seed: int, entry: dict, files: dict[str, Path]) -> Entry:
        """Assemble ``entry.json`` and ``files`` (``{name in the entry: source path}``, copied)
        into a temporary folder and rename it into place."""
        target = self.entry_folder(arm, seed)
        if target.exists():
            raise SmallboxError(f"{target}: the ledger already has this run")
        with atomic_folder(target) as tmp:
            for name, source in files.items():
                shutil.copyfile(source, tmp / name)
            write_json_atomic(entry, tmp / ENTRY, indent=1)
        return Entry(target, entry)


def read_entries(folder, broken: list | None = None) -> list[Entry]:
    """Every whole entry under ``folder`` (a matrix's ledger folder, or a parent of several),
    sorted by arm and seed; unfinished temporary folders and set-aside ones are ignored. An entry
    folder that is not whole is an error naming it, or, given a ``broken`` list, is appended to it
    as ``(folder, why)`` and left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmallboxError(f"{folder}: no such ledger folder")
    entries = []
    for path in sorted(folder.rglob(ENTRY)):
        if _hidden(path, folder):
            continue
        why = entry_problem(path.parent)
        if why is None:
            entries.append(Entry(path.parent, read_json(path)))
        elif broken is None:
            raise SmallboxError(f"{why} (run `smallbox experiments run` on its matrix to redo it)")
        else:
            broken.append((path.parent, why))
    return sorted(entries, key=lambda e: (e.data.get("matrix", ""), e.arm, e.seed))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
