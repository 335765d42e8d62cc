"""COCO json -> Ultralytics YOLO dataset, with the id maps needed to come back (the format of
``data.yaml`` and ``manifest.json`` is described in ``manifest.py``)::

    OUT/
      data.yaml                 train/val; data-NAME.yaml per area range (splits train-NAME, val-NAME);
                                data-tiles.yaml with --tiles (train-tiles: tiles of the train images,
                                val: the whole val images, scored through sliced inference)
      manifest.json             class index <-> category id, file name -> image id, per split
      annotations/<split>.json  COCO ground truth of each split with the ORIGINAL ids
      images/<split>/<file>     hard links to the sources (or absolute symlinks to the resolved
                                sources, or copies; each falls back to the next where refused)
      labels/<split>/<stem>.txt one row per non-crowd box: class cx cy w h (cxcywh_norm)

Label rows are computed and formatted exactly as ``ultralytics.data.converter.convert_coco``
does (float64 ``(x + w/2) / W``, ``"%g"``, exact duplicate rows dropped), with class = position
of the category id in ascending order. Everything is written into a temporary folder beside
OUT and renamed at the end: an existing OUT is replaced only after success, an interrupted run
leaves no half-written OUT, and a rerun writes byte-identical files.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from ..errors import SmallboxError
from ..fileio import atomic_folder, compact_json_bytes, paused_gc
from .buckets import SizeBuckets
from .coco import CocoDataset
from .imagefiles import is_image_name
from .manifest import (MANIFEST_FILE, SECTION, DatasetSection, dump_data_yaml, mean_box_size, read_data_yaml,
                       write_manifest_text)
from .split import AreaRange, area_subset, bbox_areas, split_by_image
from .tiles import TILES_SPLIT, TileSpec, tile_dataset, write_tile_images

PLACEMENTS = ("hardlink", "symlink", "copy")  # each falls back to the next
LABEL_ROW = "%g %g %g %g %g\n"  # Ultralytics' convert_coco writes "%g" too: same bytes


@dataclass
class Split:
    """One split to write: its COCO json dict and the folder its ``file_name``s are relative to."""

    name: str
    data: dict
    image_root: Path


@dataclass
class ConvertResult:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> {"images", "boxes", "negatives"}
    buckets: list[SizeBuckets]
    placed: dict[str, int] = field(default_factory=dict)  # image placement -> count (per split folder)
    warnings: list[str] = field(default_factory=list)
    sources: int = 0  # distinct source image files placed (a size split places its images again)


@paused_gc()
def convert_to_yolo(
    train: CocoDataset,
    out,
    val: CocoDataset | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    area_ranges: tuple[AreaRange, ...] = (),
    drop_empty: bool = False,
    buckets: str | list[str] = "fit",
    placement: str = "hardlink",
    progress: bool = True,
    tiles: TileSpec | None = None,
    max_dets: int | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """Write ``train`` (and ``val``, or a seeded split of ``train``) as a YOLO dataset into ``out``.

    Args:
        train, val: validated datasets with an image root. Without ``val``, ``train`` is split by
            image (``val_fraction``, ``seed``; see ``split_by_image``).
        area_ranges: per-area splits; each adds ``train-NAME``/``val-NAME`` and ``data-NAME.yaml``.
        drop_empty (bool): leave images without an in-range box out of the per-area splits.
        buckets: extra size range sets besides COCO's, each an ``--areas`` spec (``"fit"``, fitted
            on the train boxes; ``"aitod"``; ``"A,B,..."``; ``"NAME=LO:HI,..."``).
        max_dets: detections per image and class the dataset's evaluations count (None: 100).
        placement (str): how images reach ``images/<split>``: ``"hardlink"`` (default; same
            filesystem only; far cheaper to create than symlinks for many files), ``"symlink"``
            (absolute, to the resolved source) or ``"copy"``. Hard links fall back to symlinks,
            symlinks to copies, where the filesystem refuses them.
        tiles: also write the train images cut into tiles (``train-tiles``, ``data-tiles.yaml``;
            :mod:`.tiles`).
    """
    if placement not in PLACEMENTS:
        raise SmallboxError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    out = Path(out).absolute()
    signature = _signature(train, val, val_fraction, seed, area_ranges, drop_empty, buckets, tiles, max_dets)
    _check_replaceable(out, signature, overwrite)
    for source in (train.path, val.path if val else None, train.image_root, val.image_root if val else None):
        if source is not None and (Path(source).absolute() == out or out in Path(source).absolute().parents):
            raise SmallboxError(f"--out {out}: {source} is inside it; converting would replace its own input")
    splits, warnings = _main_splits(train, val, val_fraction, seed)
    if len({r.name for r in area_ranges}) != len(area_ranges):
        raise SmallboxError("--split names must be unique")
    for r in area_ranges:
        for base in splits[:2]:
            splits.append(Split(f"{base.name}-{r.name}", area_subset(base.data, r, drop_empty), base.image_root))
    category_ids = train.category_ids
    warnings += _unreadable_suffixes(splits[:2])
    bucket_sets = _bucket_sets(buckets, splits[0].data, warnings)
    origins = None
    if tiles is not None:
        tile_data, origins = tile_dataset(splits[0].data, tiles)
        splits.append(Split(TILES_SPLIT, tile_data, Path(TILES_SPLIT)))  # cropped straight into the dataset below

    names = {split.name: yolo_file_names(split.data["images"]) for split in splits}
    boxes = {split.name: label_boxes(split.data, category_ids) for split in splits}
    placer = _ImagePlacer(placement)
    with atomic_folder(out) as tmp:
        if tiles is not None:  # crops are new files: written in place, not linked
            splits[-1].image_root = tmp / "images" / TILES_SPLIT
            write_tile_images(splits[0].data, splits[0].image_root, origins, splits[-1].image_root, progress)
        labels = _LabelFiles(tmp / "labels", splits, names, boxes)
        with tqdm(total=sum(len(n) for n in names.values()), desc="convert", unit="img", disable=not progress) as bar:
            for split in splits:
                if split.name == TILES_SPLIT:
                    bar.update(len(names[split.name]))
                else:
                    placer.place_all(split, names[split.name], tmp / "images" / split.name, bar)
                _write_json(split.data, tmp / "annotations" / f"{split.name}.json")
        rows = labels.write()
        _write_yamls(tmp, out, train, {s: {n: i for i, n in by_id.items()} for s, by_id in names.items()}, splits, area_ranges,
                     bucket_sets, tiles, origins, max_dets, signature)
    counts = {s.name: {"images": len(names[s.name]), "boxes": rows[s.name], "negatives": len(names[s.name]) - len(boxes[s.name])} for s in splits}
    warnings += [f"{name}: no images (Ultralytics cannot train or validate on it)" for name, c in counts.items() if not c["images"]]
    return ConvertResult(out, counts, bucket_sets, placer.placed, warnings, len(placer.sources))


def _main_splits(train: CocoDataset, val: CocoDataset | None, val_fraction: float, seed: int) -> tuple[list[Split], list[str]]:
    if val is not None:
        _check_same_categories(train, val)
        return [Split("train", train.data, train.image_root), Split("val", val.data, val.image_root)], []
    train_ids, val_ids = split_by_image(train.data, val_fraction, seed)
    parts = [Split("train", train.subset(train_ids).data, train.image_root), Split("val", train.subset(val_ids).data, train.image_root)]
    warnings = []
    for part in parts:
        present = {a["category_id"] for a in part.data["annotations"] if not a.get("iscrowd")}
        missing = [n for c, n in sorted(train.category_names.items()) if c not in present]
        if missing:
            warnings.append(f"{part.name} split has no box of: {', '.join(missing)} (too few images hold them)")
    return parts, warnings


def _unreadable_suffixes(splits: list[Split]) -> list[str]:
    odd = sorted({im["file_name"] for s in splits for im in s.data["images"] if not is_image_name(im["file_name"])})
    return [f"{len(odd)} image(s) with a suffix Ultralytics does not read, e.g. {odd[:3]}"] if odd else []


def _check_same_categories(train: CocoDataset, val: CocoDataset):
    a, b = train.category_names, val.category_names
    for cid in sorted(set(a) | set(b)):
        if a.get(cid) != b.get(cid):
            raise SmallboxError(f"{val.path}: category {cid} is {b.get(cid)!r} there but {a.get(cid)!r} in {train.path}; both splits need the same categories")


def _bucket_sets(specs, train_data: dict, warnings: list[str]) -> list[SizeBuckets]:
    """COCO's set first, then the fitted or the user's sets (each unless it equals COCO's; two
    sets of one name are told apart: custom, custom2, ...)."""
    sets = [SizeBuckets.coco()]
    areas = bbox_areas([a for a in train_data["annotations"] if not a.get("iscrowd")])
    for spec in [specs] if isinstance(specs, str) else specs:
        try:
            extra = SizeBuckets.parse(spec, areas)
        except SmallboxError as e:
            if not str(spec).startswith("fit"):
                raise
            warnings.append(f"no fitted size ranges ({spec}): {e}")
            continue
        if extra.is_coco or any(extra.ranges() == s.ranges() for s in sets):
            continue
        name, k = extra.name, 2
        while any(s.name == name for s in sets):
            name, k = f"{extra.name}{k}", k + 1
        sets.append(replace(extra, name=name))
    return sets


def yolo_file_names(images: list[dict]) -> dict[int, str]:
    """``{image id: file name in images/<split>}``: the original base name where its stem is
    unique in the split (compared case-insensitively, for case-insensitive filesystems), else
    prefixed with the image id. Ultralytics finds a label by the image's stem, so stems must differ."""
    base = {im["id"]: im["file_name"].replace("\\", "/").rsplit("/", 1)[-1] for im in images}
    key = {i: _stem_key(n) for i, n in base.items()}
    key_count = Counter(key.values())
    names = {i: n for i, n in base.items() if key_count[key[i]] == 1}
    taken = {key[i] for i in names}
    for i, n in base.items():
        if i in names:
            continue
        candidate, k = f"{i}_{n}", 2
        while _stem_key(candidate) in taken:
            candidate, k = f"{i}_{k}_{n}", k + 1
        names[i] = candidate
        taken.add(_stem_key(candidate))
    return {im["id"]: names[im["id"]] for im in images}


def label_name(file_name: str) -> str:
    """The label file of an image, as Ultralytics' ``img2label_paths`` derives it."""
    return file_name.rsplit(".", 1)[0] + ".txt" if "." in file_name else file_name + ".txt"


def _stem_key(file_name: str) -> str:
    return label_name(file_name).casefold()


def label_boxes(data: dict, category_ids: list[int]) -> dict[int, list[tuple]]:
    """``{image id: [(class, cx, cy, w, h), ...]}`` for images with at least one non-crowd box,
    in annotation order (``label_text`` prints them). A class is the position of its category id
    in ``category_ids`` (ascending).

    Boxes go ``xywh_abs`` -> ``cxcywh_norm`` with the float64 operations of Ultralytics'
    ``convert_coco`` (``box[:2] += box[2:] / 2; box[[0, 2]] /= w; box[[1, 3]] /= h``) and of
    ``boxes.xywh_abs_to_cxcywh_norm``, so the printed digits are the same. Plain floats in one
    loop rather than arrays or a function per box: the round trip through numpy cost more than
    the arithmetic (0.26 s against 0.17 s of CPU for 100k boxes), a call per box a third more."""
    size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    class_index = {c: i for i, c in enumerate(category_ids)}
    by_image: dict[int, list[tuple]] = {}
    for a in data["annotations"]:
        if a.get("iscrowd"):
            continue
        image_id = a["image_id"]
        (x, y, w, h), (width, height) = a["bbox"], size[image_id]
        row = (class_index[a["category_id"]], (x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
        rows = by_image.get(image_id)
        if rows is None:
            by_image[image_id] = [row]
        else:
            rows.append(row)
    return by_image


def label_text(rows: list[tuple]) -> str:
    """A label file: rows ``class cx cy w h`` printed with ``"%g"`` as Ultralytics' ``convert_coco``
    prints them, exact duplicate rows dropped as it drops them. One formatting call per image
    rather than per row."""
    unique = list(dict.fromkeys(rows)) if len(rows) > 1 else rows
    return (LABEL_ROW * len(unique)) % tuple(itertools.chain.from_iterable(unique))


class _LabelFiles:
    """labels/<split>/<stem>.txt of every split, one per image (an empty one for a negative)."""

    def __init__(self, folder: Path, splits: list[Split], names: dict[str, dict[int, str]], boxes: dict[str, dict[int, list]]):
        self.folder, self.splits, self.names, self.boxes = folder, splits, names, boxes
        for split in splits:
            os.makedirs(folder / split.name)

    def write(self) -> dict[str, int]:
        """Every split's files; rows written per split."""
        rows = {}
        for split in self.splits:
            images, boxes, names = split.data["images"], self.boxes[split.name], self.names[split.name]
            into = os.open(self.folder / split.name, os.O_RDONLY)  # files are made relative to it: the kernel walks one name
            written = 0
            try:
                for image in images:
                    text = label_text(boxes[image["id"]]) if image["id"] in boxes else ""
                    written += text.count("\n")
                    _create_file(into, label_name(names[image["id"]]), text.encode("utf-8"), self.folder / split.name)
            finally:
                os.close(into)
            rows[split.name] = written
        return rows


def _create_file(into: int, name: str, content: bytes, folder: Path):
    """A new file ``name`` in the open folder ``into`` (whose path is ``folder``: an error names
    the whole path, not the name alone)."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=into)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder / name)) from None


class _ImagePlacer:
    """Puts each image of a split into images/<split>: a hard link (``os.link`` follows a
    symlinked source to its file), else an absolute symlink to the resolved source, else a copy;
    a refusal switches this and every later image to the next way (e.g. the output on another
    filesystem). ``placed`` counts each way."""

    BAR_STEP = 512  # images per progress bar update

    def __init__(self, placement: str):
        self.placement = placement
        self.placed = {how: 0 for how in PLACEMENTS}
        self.sources: set[tuple[str, str]] = set()  # (image root, file name) of every image placed
        # realpath per folder, not per file: one lookup serves every image in it
        self.real_folder = functools.lru_cache(maxsize=None)(os.path.realpath)

    def place_all(self, split: Split, names: dict[int, str], folder: Path, bar):
        os.makedirs(folder)
        root, into = str(split.image_root), os.open(folder, os.O_RDONLY)  # links are made relative to it (one name to walk)
        try:
            for k, image in enumerate(split.data["images"], 1):
                self.place(root, image["file_name"], (into, folder, names[image["id"]]))
                self.sources.add((root, image["file_name"]))
                if k % self.BAR_STEP == 0:
                    bar.update(self.BAR_STEP)
            bar.update(len(names) % self.BAR_STEP)
        finally:
            os.close(into)

    def place(self, image_root: str, file_name: str, target: tuple[int, Path, str]):
        """One image as ``target``: (open folder, its path, name)."""
        into, folder, name = target
        if self.placement == "hardlink":
            try:
                os.link(f"{image_root}/{file_name}", name, dst_dir_fd=into)
                self.placed["hardlink"] += 1
                return
            except OSError:
                self.placement = "symlink"
        if self.placement == "symlink":
            try:
                os.symlink(self.source(image_root, file_name), name, dir_fd=into)
                self.placed["symlink"] += 1
                return
            except OSError:
                self.placement = "copy"
        shutil.copyfile(os.path.join(image_root, file_name), folder / name)
        self.placed["copy"] += 1

    def source(self, image_root: str, file_name: str) -> str:
        """Absolute path of the image with every link resolved (realpath once per folder): what
        a symlink points at."""
        path = os.path.join(image_root, file_name)
        path = os.path.join(self.real_folder(os.path.dirname(path)), os.path.basename(path))
        return os.path.realpath(path) if os.path.islink(path) else path


def _write_json(obj, path: Path):
    """Stable bytes: keys in the source's order (a rerun reads the same order), ASCII (any
    locale's json reader, pycocotools' among them, gets the same text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compact_json_bytes(obj))


def _write_yamls(tmp: Path, out: Path, train: CocoDataset, file_names: dict, splits: list[Split], area_ranges, bucket_sets,
                 tiles: TileSpec | None = None, origins: dict | None = None, max_dets: int | None = None,
                 signature: dict | None = None):
    classes = [{"index": i, "category_id": c, "name": train.category_names[c]} for i, c in enumerate(train.category_ids)]
    (tmp / MANIFEST_FILE).write_text(write_manifest_text(classes, file_names, {TILES_SPLIT: origins} if origins else None,
                                                         signature), encoding="utf-8")
    # every yaml lists the ground truth of every split: consumers look it up by split name
    # (YoloManifest.split_of_folder(data["val"]) -> "val-NAME")
    long_sides = sorted(max(im["width"], im["height"]) for im in splits[0].data["images"])
    section = DatasetSection(out, {s.name: f"annotations/{s.name}.json" for s in splits}, bucket_sets,
                             box_size=mean_box_size(train),
                             train_long_side=long_sides[len(long_sides) // 2] if long_sides else None, max_dets=max_dets)
    common = {"path": str(out), "nc": len(classes), "names": {c["index"]: c["name"] for c in classes}}
    (tmp / "data.yaml").write_text(dump_data_yaml(
        {**common, "train": "images/train", "val": "images/val", SECTION: section.to_dict()}), encoding="utf-8")
    for r in area_ranges:
        section.area_range = r.to_dict()
        data = {**common, "train": f"images/train-{r.name}", "val": f"images/val-{r.name}", SECTION: section.to_dict()}
        (tmp / f"data-{r.name}.yaml").write_text(dump_data_yaml(data), encoding="utf-8")
    if tiles is not None:
        section.area_range, section.tiles = None, tiles.to_dict()
        tile_sides = [max(o["width"], o["height"]) for o in (origins or {}).values()]
        section.train_long_side = max(tile_sides) if tile_sides else tiles.size
        data = {**common, "train": f"images/{TILES_SPLIT}", "val": "images/val", SECTION: section.to_dict()}
        (tmp / "data-tiles.yaml").write_text(dump_data_yaml(data), encoding="utf-8")


def _is_converted_dataset(folder: Path) -> bool:
    try:
        data = read_data_yaml(folder / "data.yaml")
    except SmallboxError:
        return False
    return SECTION in data and (folder / MANIFEST_FILE).is_file()


def _check_replaceable(out: Path, signature: dict | None = None, overwrite: bool = False):
    """Replace only an empty folder or an earlier conversion of the same inputs with the same
    options (a rerun), never a user's other files; another conversion only with ``overwrite``."""
    if not os.path.lexists(out):
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    if not (out.is_dir() and not out.is_symlink() and _is_converted_dataset(out)):
        raise SmallboxError(f"{out}: exists and is not a dataset written by `smallbox convert`; refusing to replace it "
                            "(remove it or choose another --out)")
    if overwrite or signature is None:
        return
    before = _recorded_signature(out)
    if before != signature:
        what = _first_difference(before, signature)
        raise SmallboxError(f"{out}: holds a dataset converted {what}; replacing it would change every run and prediction "
                            "file made from it. Choose another --out, or add --overwrite to replace it")


def _signature(train, val, val_fraction, seed, area_ranges, drop_empty, buckets, tiles, max_dets) -> dict:
    """What makes a conversion the same dataset: its inputs (path and content hash) and options."""
    import hashlib

    def record(dataset):
        if dataset is None:
            return None
        return {"json": str(Path(dataset.path).absolute()), "sha1": hashlib.sha1(Path(dataset.path).read_bytes()).hexdigest(),
                "images": str(Path(dataset.image_root).absolute()) if dataset.image_root else None}

    return {"train": record(train), "val": record(val),
            "options": {"val_fraction": None if val is not None else val_fraction, "seed": None if val is not None else seed,
                        "splits": [r.to_dict() for r in area_ranges], "drop_empty": drop_empty,
                        "areas": [buckets] if isinstance(buckets, str) else list(buckets),
                        "tiles": tiles.to_dict() if tiles else None, "max_dets": max_dets}}


def _recorded_signature(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8")).get("conversion")
    except (OSError, ValueError, AttributeError):
        return None


def _first_difference(before: dict | None, now: dict) -> str:
    if before is None:
        return "by an older smallbox (its inputs and options are not recorded)"
    for key in ("train", "val"):
        if (before.get(key) or {}).get("json") != (now.get(key) or {}).get("json"):
            return f"from another {key} json ({(before.get(key) or {}).get('json')})"
        if (before.get(key) or {}).get("sha1") != (now.get(key) or {}).get("sha1"):
            return f"from another version of the {key} json (changed since)"
    changed = [k for k in now["options"] if before.get("options", {}).get(k) != now["options"][k]]
    return "with other options: " + ", ".join(f"{k} {before.get('options', {}).get(k)!r} (now {now['options'][k]!r})"
                                               for k in changed) if changed else "differently"
