"""The experiment ledger: one folder per finished run, written whole or not at all::

    LEDGER/<matrix name>/<arm>/seed<k>/
      entry.json            arm, seed, scale, settings, git commit, hardware, wall time, images/s,
                            the metrics of best.pt on val (predict + smallbox eval), where they came from
      predictions.json.gz   best.pt's COCO results on the val split (original ids): any later
                            comparison can be recomputed from it
      fused.json.gz         (specialist arms) the WBF fusion with the arm it is fused with
      best.pt               the weights, when they fit the matrix's keep_weights_mb

A run that is cut off leaves no entry (the folder is assembled beside the ledger and renamed
into place), so the runner simply runs it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import atomic_folder, read_json, write_json_atomic

ENTRY = "entry.json"
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
    def val(self) -> Path | None:
        """The val json the run was scored on: recorded relative to the entry folder (so the ledger
        travels with a clone of the repository), or absolute by older entries."""
        recorded = self.data.get("val")
        return None if not recorded else self.folder / recorded if not os.path.isabs(recorded) else Path(recorded)

    def val_mismatch(self) -> str | None:
        """Why the val json found now is not the one the run was scored on (None: it is, or the
        entry predates the recorded hash)."""
        recorded, path = self.data.get("val_sha1"), self.val
        if recorded and path and path.is_file() and file_sha1(path) != recorded:
            return f"{os.path.normpath(path)} differs from the val json {self.arm} seed {self.seed} was scored on"
        return None


def file_sha1(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def val_record(val, entry_folder: Path) -> dict:
    """How an entry records its val json: the path relative to the entry folder, and its hash."""
    return {"val": os.path.relpath(Path(val).resolve(), Path(entry_folder).resolve()), "val_sha1": file_sha1(val)}


class Ledger:
    """The entries of one matrix: ``root/<matrix name>/<arm>/seed<k>/``."""

    def __init__(self, root, matrix_name: str):
        self.root = Path(root)
        self.folder = self.root / matrix_name

    def entry_folder(self, arm: str, seed: int) -> Path:
        return self.folder / arm / f"seed{seed}"

    def has(self, arm: str, seed: int) -> bool:
        return (self.entry_folder(arm, seed) / ENTRY).is_file()

    def get(self, arm: str, seed: int) -> Entry | None:
        folder = self.entry_folder(arm, seed)
        return Entry(folder, read_json(folder / ENTRY)) if (folder / ENTRY).is_file() else None

    def entries(self) -> list[Entry]:
        return read_entries(self.folder) if self.folder.is_dir() else []

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


def read_entries(folder) -> list[Entry]:
    """Every complete entry under ``folder`` (a matrix's ledger folder, or a parent of several),
    sorted by arm and seed; unfinished temporary folders are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmallboxError(f"{folder}: no such ledger folder")
    entries = [Entry(p.parent, read_json(p)) for p in sorted(folder.rglob(ENTRY)) if not _hidden(p, folder)]
    return sorted(entries, key=lambda e: (e.data.get("matrix", ""), e.arm, e.seed))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
