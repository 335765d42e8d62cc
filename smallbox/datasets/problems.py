"""What can be wrong with a COCO json, and what ``smallbox fix`` does about it.

The checker in ``coco.py`` records one ``Problem`` per offending entry. ``load_coco`` (eval,
convert, training) refuses a file with any of them; ``inspect_coco`` (eda, fix) collects them and
sets the unusable entries aside. A kind with a ``repair`` is one ``smallbox fix`` makes, with a
change log; the others need a person, because any automatic choice could change a score.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_LISTED = 20  # problems spelled out in an error message
FIRST_IDS = 5  # ids shown per kind in the problems table


@dataclass(frozen=True)
class Kind:
    """A kind of problem.

    Args:
        title: what is wrong, as the problems table says it.
        repair: what ``smallbox fix`` does about it (past tense, for the change log), or None.
        drop: the repair removes the entry (else it sets ``Problem.change`` on it).
    """

    title: str
    repair: str | None = None
    drop: bool = False


KINDS = {
    # repairable by `smallbox fix`
    "duplicate_annotation_id": Kind("annotation id used before in the file", "renumbered"),
    "bad_annotation_id": Kind("annotation id missing or not an integer", "renumbered"),
    # pycocotools and faster-coco-eval mark "unmatched" with 0: a detection matched to annotation 0 counts as a miss
    "zero_annotation_id": Kind("annotation id 0 (COCO evaluation reads it as 'unmatched')", "renumbered"),
    "box_slightly_outside": Kind("box reaches outside its image by at most the tolerance", "clipped to the image"),
    "zero_size_box": Kind("box of zero width or height", "dropped", drop=True),
    "missing_area": Kind("area missing or not a positive number", "area set to w*h"),
    "missing_iscrowd": Kind("iscrowd missing", "iscrowd set to 0"),
    # an exact repeat can never be matched twice: it caps recall and lowers AP
    "duplicate_box": Kind("the same box, class and image as an earlier annotation", "dropped", drop=True),
    "image_size_swapped": Kind("width/height swapped against the image file (EXIF orientation)", "width/height set from the image file"),
    # need a person
    "not_an_object": Kind("entry is not a json object"),
    "missing_keys": Kind("entry lacks required keys"),
    "bad_image_id": Kind("image id not an integer"),
    "duplicate_image_id": Kind("image id used before in the file"),
    # which id the file belongs to is a person's call (convert would label the file twice)
    "duplicate_file_name": Kind("file_name used by another image id"),
    "bad_image_size": Kind("image width/height not positive numbers"),
    "bad_file_name": Kind("file_name empty, absolute or escaping the image root"),
    "image_not_found": Kind("image file not found"),
    "unreadable_image": Kind("image file cannot be read"),
    "image_size_differs": Kind("width/height differ from the image file"),
    "bad_category": Kind("category without an integer id and a name"),
    "duplicate_category_id": Kind("category id used before in the file"),
    "unknown_image": Kind("annotation points at an unknown image"),
    "unknown_category": Kind("annotation has an unknown category"),
    "bad_bbox": Kind("bbox not four finite numbers"),
    "negative_size_box": Kind("box of negative width or height"),
    "box_outside": Kind("box reaches outside its image by more than the tolerance"),
    "box_entirely_outside": Kind("box lies entirely outside its image"),
}
# Fills that change no number any evaluator computes: done in memory on load, written by fix.
FILLS = frozenset({"missing_area", "missing_iscrowd"})


@dataclass(frozen=True)
class Problem:
    """One offending entry.

    Attributes:
        kind: a key of ``KINDS``.
        message: names the entry by its id (and its image, for an annotation), e.g.
            ``annotation 12 (image 3) has width 0 and height 5``.
        section: ``"images"``, ``"annotations"`` or ``"categories"``.
        index: the entry's position in that list of the json.
        id: the entry's id as the json has it (None when it has none).
        change: the keys ``fix`` sets on the entry (repairable kinds that are not drops).
        reach: how far (px) a box reaches outside its image (``box_outside``), else None.
    """

    kind: str
    message: str
    section: str
    index: int
    id: object = None
    change: dict = field(default_factory=dict)
    reach: float | None = None

    @property
    def repairable(self) -> bool:
        return KINDS[self.kind].repair is not None


def problem_table(problems: list[Problem]) -> list[dict]:
    """One row per kind, in the order of ``KINDS``: ``{kind, title, count, first_ids, repair}``."""
    by_kind: dict[str, list[Problem]] = {}
    for p in problems:
        by_kind.setdefault(p.kind, []).append(p)
    return [{"kind": k, "title": KINDS[k].title, "count": len(by_kind[k]),
             "first_ids": [p.id if p.id is not None else f"#{p.index}" for p in by_kind[k][:FIRST_IDS]],
             "repair": KINDS[k].repair}
            for k in KINDS if k in by_kind]


def format_problem_table(rows: list[dict]) -> str:
    """Rows of ``problem_table`` as aligned text lines (terminal, error messages)."""
    lines = [f"{'problem':<62} {'count':>6}  {'first ids':<28} smallbox fix"]
    for r in rows:
        lines.append(f"{r['title']:<62} {r['count']:>6}  {_first_ids(r):<28} {r['repair'] or '- (by hand)'}")
    return "\n".join(lines)


def _first_ids(row: dict) -> str:
    return ", ".join(map(str, row["first_ids"])) + (", ..." if row["count"] > len(row["first_ids"]) else "")


def format_problem_markdown(rows: list[dict]) -> list[str]:
    """Rows of ``problem_table`` as a markdown table."""
    out = ["| problem | count | first ids | smallbox fix |", "|---|---:|---|---|"]
    return out + [f"| {r['title']} | {r['count']} | {_first_ids(r)} | {r['repair'] or '– (by hand)'} |" for r in rows]


def set_aside_text(set_aside: dict) -> str:
    """``set aside 3 box(es) (reason 2; reason 1) and 1 image(s) (reason 1)``, or ''."""
    parts = []
    for section, noun in (("annotations", "box(es)"), ("images", "image(s)")):
        reasons = set_aside.get(section) or {}
        if reasons:
            why = "; ".join(f"{title} {n}" for title, n in reasons.items())
            parts.append(f"{sum(reasons.values())} {noun} ({why})")
    return "set aside " + " and ".join(parts) if parts else ""


def fix_command(path, image_root=None, tolerance: float | None = None) -> str:
    """The repair command for a file. Its output goes into the current folder (the data's own
    folder is often read-only or shared), named after the file."""
    path = Path(path)
    stem = path.name[: -len(".json.gz")] if path.name.endswith(".json.gz") else path.stem
    images = f" --images {image_root}" if image_root is not None else ""
    wider = f" --tolerance {tolerance:g}" if tolerance is not None else ""
    return f"smallbox fix {path} --out {stem}.fixed.json{images}{wider}"


def tolerance_to_clip(problems: list[Problem]) -> float | None:
    """The ``--tolerance`` that would clip every box now refused for reaching too far outside
    its image (the farthest reach, rounded up to 0.01 px so that the printed number suffices),
    or None when there is no such box."""
    reaches = [p.reach for p in problems if p.kind == "box_outside" and p.reach is not None]
    if not reaches:
        return None
    return math.ceil(max(reaches) * 100 - 1e-6) / 100


def wider_tolerance_text(path, problems: list[Problem], image_root=None) -> str:
    """A line for the boxes a wider tolerance would clip, or ''."""
    tolerance = tolerance_to_clip(problems)
    if tolerance is None:
        return ""
    n = sum(p.kind == "box_outside" for p in problems)
    return (f"\n{n} box(es) reach farther outside than the tolerance, at most {tolerance:g} px: if that is annotation "
            f"slack (not a width/height mix-up), clip them with: {fix_command(path, image_root, tolerance)}")


def listing(path, problems: list[Problem]) -> str:
    """``PATH: N problem(s):`` and each message (up to ``MAX_LISTED``)."""
    shown = [p.message for p in problems[:MAX_LISTED]]
    more = len(problems) - len(shown)
    return f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")


def refusal(path, problems: list[Problem], image_root=None) -> str:
    """The message of a file refused for ``problems``: each spelled out, then what
    ``smallbox fix`` repairs and what needs a person."""
    text = listing(path, problems)
    repairable = sum(p.repairable for p in problems)
    by_hand = Counter(KINDS[p.kind].title for p in problems if not p.repairable)
    if repairable:
        text += f"\n{repairable} of them can be repaired, with a change log; run: {fix_command(path, image_root)}"
    if by_hand:
        text += "\nto fix by hand: " + "; ".join(f"{title} ({n})" for title, n in by_hand.items())
        text += f" (smallbox eda {path} --out DIR lists every problem and analyses the rest)"
    return text + wider_tolerance_text(path, problems, image_root)
