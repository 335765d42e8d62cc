"""Load and validate a COCO detection json.

One checker, two callers:

- ``load_coco`` (eval, convert, training) refuses a file with any problem: the message names the
  file and every offending image / annotation / category id, and points at ``smallbox fix`` for
  the problems it repairs. Nothing is guessed where a guess could change a score.
- ``inspect_coco`` (eda, fix) collects every problem (``problems.Problem``) and returns the
  usable part of the file as ``smallbox fix`` would leave it, with what it set aside and why.

Only an unreadable file (not json, or not an object with ``images``, ``annotations`` and
``categories`` lists) stops both.
"""

from __future__ import annotations

import math
import os
import posixpath
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SmallboxError
from ..fileio import paused_gc, read_json
from .imagefiles import image_size
from .problems import FILLS, KINDS, Problem, refusal

OUT_OF_BOUNDS = ("error", "clip")
# How far (pixels) a box may reach outside its image and still be clipped by `smallbox fix`:
# annotation tools round outwards, TACO has boxes starting at y = -1 and -0.5.
DEFAULT_TOLERANCE = 1.0
EPS = 1e-6  # float noise at the image border is not "outside"
SECTIONS = ("images", "categories", "annotations")


@dataclass
class CocoDataset:
    """A validated COCO detection dataset.

    ``data`` is the json itself (``images``, ``annotations``, ``categories``), with ``area``
    filled in as ``w*h`` where it was missing, ``iscrowd`` defaulted to 0, and boxes clipped to
    the image when ``out_of_bounds="clip"``. From ``inspect_coco``, ``data`` holds only the
    usable entries, repaired as ``smallbox fix`` would; ``problems`` lists every problem and
    ``set_aside`` counts the boxes and images left out, by reason.
    """

    path: Path
    data: dict
    image_root: Path | None = None
    warnings: list[str] = field(default_factory=list)
    clipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    set_aside: dict[str, Counter] = field(default_factory=lambda: {"images": Counter(), "annotations": Counter()})

    @property
    def images(self) -> list[dict]:
        return self.data["images"]

    @property
    def annotations(self) -> list[dict]:
        return self.data["annotations"]

    @property
    def categories(self) -> list[dict]:
        return self.data["categories"]

    @property
    def category_ids(self) -> list[int]:
        """Category ids in ascending order: position ``i`` is YOLO class index ``i``."""
        return sorted(c["id"] for c in self.categories)

    @property
    def category_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def image_path(self, image: dict) -> Path:
        if self.image_root is None:
            raise SmallboxError(f"{self.path}: no image root given to find {image['file_name']!r}")
        return self.image_root / image["file_name"]

    def areas(self, include_crowd: bool = False) -> np.ndarray:
        """Box areas ``w*h`` in original pixels², shape ``[N]``."""
        return np.array(
            [a["bbox"][2] * a["bbox"][3] for a in self.annotations if include_crowd or not a.get("iscrowd", 0)],
            dtype=np.float64,
        )

    def annotations_by_image(self) -> dict[int, list[dict]]:
        by_image = {im["id"]: [] for im in self.images}
        for a in self.annotations:
            by_image[a["image_id"]].append(a)
        return by_image

    def subset(self, image_ids) -> "CocoDataset":
        """The same dataset restricted to ``image_ids`` (order of the original kept)."""
        keep = set(image_ids)
        data = dict(self.data)
        data["images"] = [im for im in self.images if im["id"] in keep]
        data["annotations"] = [a for a in self.annotations if a["image_id"] in keep]
        return CocoDataset(self.path, data, self.image_root)


def load_coco(path, image_root=None, out_of_bounds: str = "error", check_files: bool = True,
              tolerance: float = DEFAULT_TOLERANCE) -> CocoDataset:
    """Read and validate a COCO detection json; refuse it if anything is wrong.

    Args:
        path: the json (or json.gz).
        image_root: folder that ``file_name`` is relative to; when given (and ``check_files``),
            every image file must exist and have the json's width/height as Ultralytics loads it
            (EXIF orientation applied).
        out_of_bounds (str): ``"error"`` rejects boxes reaching outside the image, ``"clip"``
            clips them to it (any distance) and counts them in ``CocoDataset.clipped``.
        tolerance (float): pixels; only decides which outside boxes the message calls
            repairable by ``smallbox fix`` (those reaching out at most this far).
    Raises:
        SmallboxError: listing every problem, each naming its id, and the repair command.
    """
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise SmallboxError(f"out_of_bounds must be one of {OUT_OF_BOUNDS}, got {out_of_bounds!r}")
    clip = out_of_bounds == "clip"
    path, data, root, checker = _checked(path, image_root, math.inf if clip else tolerance, check_files)
    accepted = FILLS | ({"box_slightly_outside"} if clip else set())
    refused = [p for p in checker.problems if p.kind not in accepted]
    if refused:
        raise SmallboxError(refusal(path, refused, root if check_files else None))
    clipped = sum(p.kind == "box_slightly_outside" for p in checker.problems)
    data = repaired(data, checker.problems, checker.rejected)
    warnings = collect_warnings(data)
    if clipped:
        warnings.append(f"{clipped} box(es) reaching outside their image were clipped to it")
    return CocoDataset(path, data, root, warnings, clipped)


def inspect_coco(path, image_root=None, tolerance: float = DEFAULT_TOLERANCE) -> CocoDataset:
    """Read a COCO detection json and keep what is usable: never refuses but for an unreadable file.

    Returns a ``CocoDataset`` whose ``data`` holds the entries without an unrepairable problem,
    repaired as ``smallbox fix`` repairs them (duplicate ids renumbered, boxes within
    ``tolerance`` pixels of the image clipped, zero-size boxes dropped, ``area``/``iscrowd``
    filled, with ``image_root``: width/height swapped by EXIF orientation set from the file);
    ``problems`` lists every problem, ``set_aside`` what was left out and why.
    """
    path, data, root, checker = _checked(path, image_root, tolerance)
    usable = repaired(data, checker.problems, checker.rejected)
    problems = checker.problems + file_name_problems(data)
    return CocoDataset(path, usable, root, collect_warnings(usable), problems=problems, set_aside=checker.set_aside)


def check_coco(path, image_root=None, tolerance: float = DEFAULT_TOLERANCE) -> tuple[dict, list[Problem]]:
    """The json as read and every problem of it: what ``smallbox fix`` repairs from."""
    _, data, _, checker = _checked(path, image_root, tolerance)
    return data, checker.problems + file_name_problems(data)


def _checked(path, image_root, tolerance: float, check_files: bool = True) -> tuple[Path, dict, Path | None, "_Checker"]:
    """Read the json (an unreadable one raises) and run the checker over it."""
    if not tolerance >= 0:  # NaN too
        raise SmallboxError(f"tolerance must be a number of pixels >= 0, got {tolerance}")
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise SmallboxError(f"{path}: expected a json object with images, annotations, categories")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise SmallboxError(f"{path}: missing or not a list: {', '.join(missing)}")
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise SmallboxError(f"{root}: image folder does not exist")
    checker = _Checker(path, root if check_files else None, tolerance)
    with paused_gc():
        checker.run(data)
    return path, data, root, checker


def repaired(data: dict, problems: list[Problem], rejected: dict[str, set]) -> dict:
    """A copy of ``data`` with every repair of ``problems`` made and the ``rejected`` entries
    (``{section: {index}}``) left out. Untouched entries are the same objects; a changed entry
    is a copy with its keys in their order (new keys last); every other top-level key is kept."""
    changes: dict[str, dict[int, dict]] = {s: {} for s in SECTIONS}
    drop = {s: set(rejected.get(s, ())) for s in SECTIONS}
    for p in problems:
        if KINDS[p.kind].drop:
            drop[p.section].add(p.index)
        elif p.repairable:
            changes[p.section].setdefault(p.index, {}).update(p.change)
    if not any(changes.values()) and not any(drop.values()):
        return data
    out = dict(data)
    for section in SECTIONS:
        entries, change, gone = data[section], changes[section], drop[section]
        if change or gone:
            out[section] = [{**e, **change[i]} if i in change else e for i, e in enumerate(entries) if i not in gone]
    return out


def duplicate_file_names(data: dict) -> dict[str, list]:
    """``{file_name: [image ids]}`` of every file named by two or more image entries."""
    ids: dict = {}
    for im in data["images"]:
        if isinstance(im, dict) and isinstance(im.get("file_name"), str):
            ids.setdefault(os.path.normpath(im["file_name"]), []).append(im.get("id"))
    return {name: found for name, found in ids.items() if len(found) > 1}


def file_name_problems(data: dict) -> list[Problem]:
    """One by-hand problem per image entry that names a file an earlier entry names."""
    position = {id(im): i for i, im in enumerate(data["images"])}
    out = []
    for name, found in duplicate_file_names(data).items():
        for im in data["images"]:
            if isinstance(im, dict) and im.get("id") in found[1:] and os.path.normpath(str(im.get("file_name"))) == name:
                out.append(Problem("duplicate_file_name", f"image {im['id']} names {name!r}, as image {found[0]} does: "
                                   "one file, two ids (its boxes would be split between them)", "images", position[id(im)],
                                   im["id"]))
    return out


def collect_warnings(data: dict) -> list[str]:
    """What is allowed but worth saying: images without boxes, unused categories, crowd boxes,
    a file named by two image ids."""
    warnings = []
    twice = duplicate_file_names(data)
    if twice:
        name, ids = next(iter(twice.items()))
        warnings.append(f"{len(twice)} file_name(s) named by two or more image ids (e.g. {name!r}: ids "
                        f"{', '.join(map(str, ids))}): one file, several ids; smallbox convert refuses this")
    with_boxes = {a["image_id"] for a in data["annotations"]}
    empty = [im["id"] for im in data["images"] if im["id"] not in with_boxes]
    if empty:
        warnings.append(f"{len(empty)} image(s) without annotations (kept as negatives), e.g. ids {empty[:5]}")
    used = Counter(a["category_id"] for a in data["annotations"])
    unused = [c["name"] for c in data["categories"] if not used[c["id"]]]
    if unused:
        warnings.append(f"categories without boxes: {', '.join(unused)}")
    crowd = [a["id"] for a in data["annotations"] if a.get("iscrowd")]
    if crowd:
        warnings.append(f"{len(crowd)} iscrowd box(es) kept: ignored by COCO evaluation, left out of YOLO labels, e.g. ids {crowd[:5]}")
    return warnings


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_NUMBER_TYPES = (int, float)  # what json gives; bool is excluded by the exact type test
FLOAT_MAX = sys.float_info.max  # NaN and infinities fail a comparison with it


def _is_number(x) -> bool:
    """A finite number: a json int too, if a float can hold it (``math.isfinite`` overflows on a
    larger one; none is a size in pixels)."""
    return type(x) in _NUMBER_TYPES and -FLOAT_MAX <= x <= FLOAT_MAX


def _is_box(b) -> bool:
    return type(b) is list and len(b) == 4 and all(_is_number(v) for v in b)


def _is_sound_annotation(a, seen: dict, images: dict, categories: set) -> bool:
    """True, and its id entered in ``seen``, for an annotation without any problem: one
    expression for the common case (a third of ``check_annotation``'s time on 100k boxes);
    anything else gets every check. Comparisons come after the type tests, and the bounds
    comparisons are false for NaN and infinities, so they also stand for ``isfinite``."""
    if type(a) is not dict:
        return False
    aid, image_id, box, area = a.get("id"), a.get("image_id"), a.get("bbox"), a.get("area")
    size = images.get(image_id) if type(image_id) is int else None
    if not (type(aid) is int and aid != 0 and aid not in seen and size is not None and type(box) is list and len(box) == 4
            and type(a.get("category_id")) is int and a["category_id"] in categories
            and type(area) in _NUMBER_TYPES and 0 < area <= FLOAT_MAX and "iscrowd" in a):
        return False
    x, y, w, h = box
    if not (type(x) in _NUMBER_TYPES and type(y) in _NUMBER_TYPES and type(w) in _NUMBER_TYPES and type(h) in _NUMBER_TYPES
            and w > 0 and h > 0 and x >= -EPS and y >= -EPS and x + w <= size[0] + EPS and y + h <= size[1] + EPS):
        return False
    seen[aid] = image_id
    return True


def _file_sizes(root: Path, file_names: list[str]) -> list:
    """Each image's ``(width, height)`` as Ultralytics loads it, or the ``SmallboxError`` of
    reading it."""
    sizes = []
    for name in file_names:
        try:
            sizes.append(image_size(os.path.join(root, name)))
        except SmallboxError as e:
            sizes.append(e)
    return sizes


def _file_name_problem(name) -> str | None:
    """What is wrong with a ``file_name``, or None."""
    if not isinstance(name, str) or not name:
        return f"file_name {name!r}"
    if name[0] in "/\\" or name[1:2] == ":":
        return f"an absolute file_name {name!r}"
    if ".." in name and posixpath.normpath(name.replace("\\", "/")).split("/")[0] == "..":
        return f"a file_name escaping the image root: {name!r}"
    return None


def _where(i: int, a: dict) -> str:
    """How a message names annotation ``i``: its id (or position) and its image."""
    return f"annotation {a.get('id', f'#{i}')} (image {a.get('image_id')})"


class _Checker:
    """One pass over images, categories and annotations, recording a ``Problem`` per offending
    entry. ``rejected`` holds the indices (per section) of entries no repair makes usable, an
    annotation on a rejected image included; ``set_aside`` counts them and the dropped ones by
    reason."""

    def __init__(self, path: Path, image_root: Path | None, tolerance: float):
        self.path, self.image_root, self.tolerance = path, image_root, tolerance
        self.file_sizes: dict = {}  # image index -> its file's size (or read error), with an image root
        self.problems: list[Problem] = []
        self.rejected: dict[str, set] = {"images": set(), "annotations": set(), "categories": set()}
        self.left_out: dict[str, set] = {"images": set(), "annotations": set(), "categories": set()}
        self.set_aside: dict[str, Counter] = {"images": Counter(), "annotations": Counter()}
        self.rejected_ids: set = set()  # ids of rejected images: their boxes are not "unknown"

    def add(self, kind: str, message: str, section: str, index: int, id_=None, change=None, reach=None):
        """Record a problem. An unrepairable one rejects its entry; it and a repair that drops
        the entry leave it out (counted in ``set_aside`` under its first reason)."""
        self.problems.append(Problem(kind, message, section, index, id_, change or {}, reach))
        k = KINDS[kind]
        if k.repair is None:
            self.rejected[section].add(index)
        if (k.repair is None or k.drop) and index not in self.left_out[section]:
            self.left_out[section].add(index)
            if section in self.set_aside:
                self.set_aside[section][k.title] += 1

    def reject(self, kind: str, message: str, section: str, index: int, id_=None) -> None:
        """Record a problem that leaves its entry unusable (or dropped, for a repairable drop)."""
        self.add(kind, message, section, index, id_)

    def run(self, data: dict):
        """Every check, in file order; with an image root, each image file's size (read first)
        against its json entry."""
        if self.image_root is not None:
            to_read = [(i, im["file_name"]) for i, im in enumerate(data["images"])
                       if isinstance(im, dict) and isinstance(im.get("file_name"), str) and _file_name_problem(im["file_name"]) is None]
            self.file_sizes = dict(zip((i for i, _ in to_read), _file_sizes(self.image_root, [name for _, name in to_read])))
        self.check_all(data)

    def check_all(self, data: dict):
        images = self.check_images(data["images"])
        categories = self.check_categories(data["categories"])
        self.check_annotations(data["annotations"], images, categories)
        self.problems.sort(key=lambda p: (SECTIONS.index(p.section), p.index))  # file order (renumbering comes last)

    def check_images(self, images: list) -> dict:
        """``{image id: (width, height)}`` of the usable images, sizes as repaired."""
        by_id = {}
        for i, im in enumerate(images):
            size = self.check_image(i, im, by_id)
            if size is not None:
                by_id[im["id"]] = size
            elif isinstance(im, dict) and _is_int(im.get("id")) and im["id"] not in by_id:
                self.rejected_ids.add(im["id"])
        return by_id

    def check_image(self, i: int, im, by_id: dict) -> tuple | None:
        if not isinstance(im, dict):
            return self.reject("not_an_object", f"image #{i} is not an object", "images", i)
        where, image_id = f"image {im.get('id', f'#{i}')}", im.get("id")
        lacking = [k for k in ("id", "file_name", "width", "height") if k not in im]
        if lacking:
            return self.reject("missing_keys", f"{where} lacks {', '.join(lacking)}", "images", i, image_id)
        if not _is_int(image_id):
            return self.reject("bad_image_id", f"{where} has a non-integer id", "images", i, image_id)
        if image_id in by_id:
            return self.reject("duplicate_image_id", f"duplicate image id {image_id}", "images", i, image_id)
        width, height = im["width"], im["height"]
        if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
            return self.reject("bad_image_size", f"{where} has width/height {width}/{height}", "images", i, image_id)
        problem = _file_name_problem(im["file_name"])
        if problem is not None:
            return self.reject("bad_file_name", f"{where} has {problem}", "images", i, image_id)
        if self.image_root is None:
            return width, height
        return self.check_image_file(i, where, im)

    def check_image_file(self, i: int, where: str, im: dict) -> tuple | None:
        """The json's width/height against the file as Ultralytics loads it: labels are
        normalised by these numbers, so a swapped pair would stretch every box."""
        path = os.path.join(self.image_root, im["file_name"])
        size = self.file_sizes[i]
        if isinstance(size, SmallboxError):
            if not os.path.isfile(path):
                return self.reject("image_not_found", f"{where}: image file not found: {path}", "images", i, im["id"])
            return self.reject("unreadable_image", f"{where}: {size}", "images", i, im["id"])
        width, height = size
        if (width, height) == (im["width"], im["height"]):
            return width, height
        said = f"{where} says {im['width']}x{im['height']} but {path} loads as {width}x{height}"
        if (width, height) == (im["height"], im["width"]):
            self.add("image_size_swapped", f"{said} (EXIF orientation)", "images", i, im["id"], {"width": width, "height": height})
            return width, height
        return self.reject("image_size_differs", f"{said}: its boxes cannot be placed", "images", i, im["id"])

    def check_categories(self, categories: list) -> set:
        ids = set()
        for i, c in enumerate(categories):
            if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
                self.add("bad_category", f"category #{i} needs an integer id and a name: {c!r}"[:200], "categories", i)
            elif c["id"] in ids:
                self.add("duplicate_category_id", f"duplicate category id {c['id']}", "categories", i, c["id"])
            else:
                ids.add(c["id"])
        return ids

    def check_annotations(self, annotations: list, images: dict, categories: set):
        seen: dict = {}  # annotation id -> image id of its first use
        renumber = []
        for i, a in enumerate(annotations):
            if not _is_sound_annotation(a, seen, images, categories):
                self.check_annotation(i, a, images, categories, seen, renumber)
        self.renumber(renumber, seen)
        self.check_repeated_boxes(annotations)

    def check_repeated_boxes(self, annotations: list):
        """An annotation that repeats an earlier one exactly (image, class, box, crowd flag)."""
        first: dict = {}
        for i, a in enumerate(annotations):
            if i in self.left_out["annotations"] or not isinstance(a, dict) or not _is_box(a.get("bbox")):
                continue
            key = (a.get("image_id"), a.get("category_id"), tuple(a["bbox"]), bool(a.get("iscrowd", 0)))
            if key in first:
                self.add("duplicate_box", f"{_where(i, a)} repeats annotation {first[key]} exactly (image, class and box)",
                         "annotations", i, a.get("id"))
            else:
                first[key] = a.get("id")

    def check_annotation(self, i: int, a, images: dict, categories: set, seen: dict, renumber: list):
        """Every check of one annotation, each problem recorded; ``seen`` gets its id if unused."""
        if not isinstance(a, dict):
            return self.add("not_an_object", f"annotation #{i} is not an object", "annotations", i)
        lacking = [k for k in ("image_id", "category_id", "bbox") if k not in a]
        if lacking:
            return self.add("missing_keys", f"{_where(i, a)} lacks {', '.join(lacking)}", "annotations", i, a.get("id"))
        self.check_annotation_id(i, a, seen, renumber)
        image_id = a["image_id"] if _is_int(a["image_id"]) else None  # ids are integers (a list would not even hash)
        size = images.get(image_id)
        if size is None and image_id not in self.rejected_ids:
            self.add("unknown_image", f"{_where(i, a)} points at unknown image {a['image_id']!r}", "annotations", i, a.get("id"))
        if not _is_int(a["category_id"]) or a["category_id"] not in categories:
            self.add("unknown_category", f"{_where(i, a)} has unknown category {a['category_id']!r}", "annotations", i, a.get("id"))
        box = self.check_bbox(i, a, size)
        if size is None and image_id in self.rejected_ids and i not in self.left_out["annotations"]:
            self.rejected["annotations"].add(i)
            self.left_out["annotations"].add(i)
            self.set_aside["annotations"]["its image is set aside"] += 1
        if box is not None and i not in self.left_out["annotations"]:
            self.check_fields(i, a, box)

    def check_annotation_id(self, i: int, a: dict, seen: dict, renumber: list):
        aid = a.get("id")
        if not _is_int(aid):
            renumber.append(("bad_annotation_id", f"{_where(i, a)} has id {aid!r}: need an integer", i, aid))
        elif aid == 0:
            renumber.append(("zero_annotation_id", f"{_where(i, a)} has id 0, which COCO evaluation takes for 'unmatched' "
                             "(its detection would count as a false positive)", i, aid))
        elif aid in seen:
            renumber.append(("duplicate_annotation_id", f"duplicate annotation id {aid}: {_where(i, a)} reuses the id of one on image {seen[aid]}", i, aid))
        else:
            seen[aid] = a["image_id"]

    def renumber(self, pending: list, seen: dict):
        """New ids above every id of the file, in file order: the first use keeps its id."""
        next_id = max((i for i in seen if _is_int(i)), default=0) + 1
        for kind, message, i, aid in pending:
            self.add(kind, message, "annotations", i, aid, {"id": next_id})
            next_id += 1

    def check_bbox(self, i: int, a: dict, size: tuple | None) -> list | None:
        """The box as it will be used (clipped when within the tolerance), or None when unusable."""
        b, aid = a["bbox"], a.get("id")
        if not _is_box(b):
            return self.reject("bad_bbox", f"{_where(i, a)} has bbox {b!r}: need four finite numbers [x, y, w, h]", "annotations", i, aid)
        x, y, w, h = b
        if w < 0 or h < 0:
            return self.reject("negative_size_box", f"{_where(i, a)} has width {w:g} and height {h:g}: both must be > 0", "annotations", i, aid)
        if w == 0 or h == 0:
            return self.reject("zero_size_box", f"{_where(i, a)} has width {w:g} and height {h:g}: both must be > 0", "annotations", i, aid)
        if size is None:
            return b
        W, H = size
        if x >= -EPS and y >= -EPS and x + w <= W + EPS and y + h <= H + EPS:
            return b
        return self.clip(i, a, W, H)

    def clip(self, i: int, a: dict, W, H) -> list | None:
        x, y, w, h = a["bbox"]
        aid, said = a.get("id"), f"{_where(i, a)} has bbox [{x:g}, {y:g}, {w:g}, {h:g}]"
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 <= x0 or y1 <= y0:
            return self.reject("box_entirely_outside", f"{said} entirely outside the {W}x{H} image", "annotations", i, aid)
        reach = max(-x, -y, x + w - W, y + h - H)
        if reach > self.tolerance + EPS:  # a reach printed as 1.32 is clipped by --tolerance 1.32
            self.add("box_outside", f"{said} outside the {W}x{H} image by {reach:g} px (tolerance {self.tolerance:g} px; "
                     "a width/height or EXIF mix-up?)", "annotations", i, aid, reach=reach)
            return None
        box = [x0, y0, x1 - x0, y1 - y0]
        change = {"bbox": box}
        if a.get("area") == w * h:  # a box area follows the box; a mask's area stays
            change["area"] = box[2] * box[3]
        self.add("box_slightly_outside", f"{said} outside the {W}x{H} image by {reach:g} px", "annotations", i, aid, change)
        return box

    def check_fields(self, i: int, a: dict, box: list):
        """``area`` and ``iscrowd``, which pycocotools needs in every ground-truth box."""
        if not _is_number(a.get("area")) or a["area"] <= 0:
            self.add("missing_area", f"{_where(i, a)} has area {a.get('area')!r}", "annotations", i, a.get("id"), {"area": box[2] * box[3]})
        if "iscrowd" not in a:
            self.add("missing_iscrowd", f"{_where(i, a)} has no iscrowd", "annotations", i, a.get("id"), {"iscrowd": 0})
