"""``smallbox fix``: repair a COCO json where the repair cannot change what a score means, and log
every id touched.

Repairs (``problems.KINDS`` with a ``repair``): duplicate or missing annotation ids renumbered
above every id of the file (the first use keeps its id; annotation ids name nothing outside the
file), boxes reaching outside their image by at most ``tolerance`` pixels clipped to it, boxes of
zero width or height dropped, a missing ``area`` set to ``w*h`` (a present one, e.g. a mask's,
is kept), a missing ``iscrowd`` set to 0, and with the image folder, a width/height pair that is
the image's swapped (EXIF orientation) set as Ultralytics loads the image. Everything else —
other keys, their order, every other value — is written back as read. A file with a problem no
repair covers is refused whole: each of those needs a person's decision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import write_json_atomic
from .coco import DEFAULT_TOLERANCE, check_coco, repaired
from .problems import KINDS, Problem, listing, wider_tolerance_text

SECTION_ENTRY = {"images": "image", "annotations": "annotation", "categories": "category"}


@dataclass
class FixResult:
    out: Path
    log: Path
    counts: dict[str, int]  # repair -> entries it touched


def changes_path(out) -> Path:
    """The change log beside the repaired json: ``FIXED.json`` -> ``FIXED.changes.json``."""
    out = Path(out)
    stem = out.name[: -len(".json.gz")] if out.name.endswith(".json.gz") else out.stem
    return out.with_name(f"{stem}.changes.json")


def fix_coco(path, out, image_root=None, tolerance: float = DEFAULT_TOLERANCE) -> FixResult:
    """Write the repaired json to ``out`` and its change log beside it (``changes_path``).

    Raises:
        SmallboxError: when a problem needs a person (nothing is written), or ``out`` would
            replace ``path``.
    """
    path, out = Path(path), Path(out)
    log = changes_path(out)
    if path.resolve() in (out.resolve(), log.resolve()):
        raise SmallboxError(f"{out}: would replace the original {path}; write the repaired file elsewhere")
    data, problems = check_coco(path, image_root, tolerance)
    by_hand = [p for p in problems if not p.repairable]
    if by_hand:
        raise SmallboxError(listing(path, by_hand) + "\nsmallbox fix repairs none of these (each needs a person's decision); "
                            f"nothing written. smallbox eda {path} --out DIR lists every problem."
                            + wider_tolerance_text(path, by_hand, image_root))
    fixed = repaired(data, problems, {})
    changes = [_change(data, p) for p in problems]
    counts = dict(Counter(c["repair"] for c in changes))
    write_json_atomic(fixed, out, separators=(",", ":"))
    write_json_atomic({"source": str(path), "output": str(out), "images": str(image_root) if image_root else None,
                       "tolerance": tolerance, "counts": counts, "changes": changes}, log, indent=1)
    return FixResult(out, log, counts)


def _change(data: dict, p: Problem) -> dict:
    """One log entry: which entry (id, position, image), what was wrong, its values before and after."""
    entry = data[p.section][p.index]
    record = {"repair": KINDS[p.kind].repair, "kind": p.kind, SECTION_ENTRY[p.section]: p.id, "index": p.index}
    if p.section == "annotations":
        record["image_id"] = entry.get("image_id")
    record["problem"] = p.message
    if KINDS[p.kind].drop:
        record["before"], record["after"] = entry, None
    else:
        record["before"] = {k: entry.get(k) for k in p.change}
        record["after"] = p.change
    return record
