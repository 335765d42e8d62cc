"""Which image id and category id a prediction carries: one rule for every command that predicts
on images (``yolo predict``, ``tv predict``, ``slice``) or reads predictions of a folder
(``ensemble --images``), so that their outputs can be fused and compared.

Image ids, first match wins:

1. **A COCO json naming the images** (``--gt`` / ``--coco``, or ``SMALLBOX_IMAGE_IDS=test.json``):
   its ids. A file matches the json image whose ``file_name`` is its path relative to the image
   folder, else the one whose base name is the file's (when that base name is unique in the
   json). The json decides which images there are: every json image must be in the folder;
   folder files the json does not name are left out, and the command says how many.
2. **A split folder of a dataset written by** ``smallbox convert`` (``DATASET/images/<split>``
   beside ``DATASET/manifest.json``): the ids the manifest records for that split. A property of
   the folder, not of the model, so every command agrees on it.
3. **Otherwise the folder itself**: its images as ``yolo predict source=FOLDER`` lists them
   (:func:`smallbox.datasets.imagefiles.list_images`), numbered ``1..N`` in that order. Each
   command writes ``images.json`` (a COCO json of those images, without annotations) beside its
   predictions, so they can be evaluated, fused or compared later.

Category ids: those of the ground truth or of the model's training data (the manifest, a
torchvision checkpoint's classes); otherwise ``1..nc`` in class-index order, as Ultralytics
numbers its own COCO results. Never 0-based: a COCO category id 0 is legal but unusual, and a
0-based export fused with a 1-based one would silently shift every class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..datasets.coco import CocoDataset, load_coco
from ..datasets.imagefiles import image_size, list_images
from ..errors import SmallboxError
from ..fileio import read_json, write_json_atomic

IMAGE_IDS_ENV = "SMALLBOX_IMAGE_IDS"
IMAGES_JSON = "images.json"


@dataclass
class ImageIndex:
    """The images a command predicts on, with their ids.

    Attributes:
        images: COCO ``images`` entries (``id``, ``file_name``, ``width``, ``height``), in
            prediction order; ``file_name`` as the json writes it (rule 1) or relative to the folder.
        files: ``{image id: image file}`` (absolute paths), where the files are known.
        category_ids: the category ids (ascending), or None when unknown.
        source: ``"json"``, ``"manifest"`` or ``"folder"`` (rule 1, 2 or 3 of the module docstring).
        described_by: the json of rule 1.
        left_out: folder files the json does not name (rule 1).
    """

    images: list[dict]
    files: dict = field(default_factory=dict)
    category_ids: list[int] | None = None
    source: str = "folder"
    described_by: Path | None = None
    left_out: list[Path] = field(default_factory=list)

    @property
    def ids(self) -> list:
        return [im["id"] for im in self.images]

    def path(self, image: dict) -> Path:
        try:
            return self.files[image["id"]]
        except KeyError:
            raise SmallboxError(f"image {image['id']} ({image['file_name']!r}): no image file known") from None

    def file_names(self) -> dict:
        """``{image id: file name}`` in prediction order (the competition CSV's rows)."""
        return {im["id"]: im["file_name"] for im in self.images}

    def id_of(self, path) -> int:
        """The id of a predicted file."""
        if not hasattr(self, "_id_by_file"):
            self._id_by_file = {os.path.abspath(f): i for i, f in self.files.items()}
        try:
            return self._id_by_file[os.path.abspath(path)]
        except KeyError:
            raise SmallboxError(f"{path}: not among the {len(self.images)} images of {self.describe()}") from None

    def knows(self, path) -> bool:
        try:
            self.id_of(path)
        except SmallboxError:
            return False
        return True

    def describe(self) -> str:
        return {"json": str(self.described_by), "manifest": "the training dataset's manifest"}.get(
            self.source, "the folder (numbered 1..N by file name)")

    def note(self) -> str:
        """One line saying where the ids come from (and what was left out)."""
        text = {"json": f"image ids from {self.described_by}", "manifest": "image ids from the training dataset's manifest",
                "folder": f"image ids by file name, 1..N over the folder (see {IMAGES_JSON})"}[self.source]
        if self.left_out:
            text += f"; {len(self.left_out)} file(s) of the folder not in the json left out, e.g. {self.left_out[0].name}"
        return text

    def to_coco(self, categories: list[dict]) -> dict:
        """A COCO json of these images without annotations (``images.json``)."""
        return {"images": self.images, "annotations": [], "categories": categories}


def _relative_name(path: Path, root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(path).name


def ids_json_from_env() -> Path | None:
    value = os.environ.get(IMAGE_IDS_ENV)
    return Path(value) if value else None


def index_from_coco(dataset: CocoDataset) -> ImageIndex:
    """Rule 1 for a dataset loaded with its image root (every file checked there)."""
    files = {im["id"]: Path(os.path.abspath(dataset.image_path(im))) for im in dataset.images} if dataset.image_root else {}
    return ImageIndex(list(dataset.images), files, dataset.category_ids, "json", dataset.path)


def index_folder(folder, ids_json=None, files=None, readable_only: bool = True) -> ImageIndex:
    """The images of ``folder`` and their ids by the module's rule.

    Args:
        folder: the image folder.
        ids_json: a COCO json naming the images (rule 1); default ``$SMALLBOX_IMAGE_IDS``.
        files: the files predicted, when not the folder's listing (e.g. a glob source).
        readable_only: an image whose header cannot be read is an error (default); False: it
            keeps its id, without a size (``yolo predict --skip-unreadable``: ids never depend on
            which files could be read).
    """
    folder = Path(folder)
    ids_json = ids_json or ids_json_from_env()
    files = [Path(f) for f in files] if files is not None else list_images(folder)
    if ids_json:
        return _index_from_json(folder, Path(ids_json), files)
    if not files:
        raise SmallboxError(f"{folder}: no images (suffixes Ultralytics reads: .jpg, .png, ...)")
    names = [_relative_name(f, folder) for f in files]
    known = _converted_split_ids(folder)
    if known and all(n in known for n in names):
        entries = [(known[n], n, f) for n, f in zip(names, files)]
        source = "manifest"
    else:
        entries = [(i, n, f) for i, (n, f) in enumerate(sorted(zip(names, files)), start=1)]
        source = "folder"
    images = [_image_entry(i, n, f, readable_only) for i, n, f in entries]
    return ImageIndex(images, {i: Path(os.path.abspath(f)) for i, _, f in entries}, None, source)


def _converted_split_ids(folder: Path) -> dict[str, int] | None:
    """``{file name: image id}`` when ``folder`` is ``DATASET/images/<split>`` of a dataset written
    by ``smallbox convert`` (rule 2), else None."""
    from ..datasets.manifest import MANIFEST_FILE

    manifest = folder.absolute().parent.parent / MANIFEST_FILE
    if folder.absolute().parent.name != "images" or not manifest.is_file():
        return None
    splits = read_json(manifest).get("splits", {})
    return splits.get(folder.name) if isinstance(splits, dict) else None


def _image_entry(image_id: int, file_name: str, path: Path, readable_only: bool = True) -> dict:
    try:
        width, height = image_size(path)
    except SmallboxError:
        if readable_only:
            raise
        return {"id": image_id, "file_name": file_name, "width": 0, "height": 0, "unreadable": True}
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def _index_from_json(folder: Path, ids_json: Path, files: list[Path]) -> ImageIndex:
    dataset = load_coco(ids_json, check_files=False)
    by_name = {_relative_name(f, folder): f for f in files}
    by_base: dict[str, list[Path]] = {}
    for f in files:
        by_base.setdefault(f.name, []).append(f)
    found = {}
    for im in dataset.images:
        name = PurePosixPath(im["file_name"].replace("\\", "/"))
        path = by_name.get(name.as_posix())
        if path is None and len(by_base.get(name.name, [])) == 1:
            path = by_base[name.name][0]
        if path is None:
            missing = sum(1 for i in dataset.images if PurePosixPath(i["file_name"].replace("\\", "/")).name not in by_base)
            raise SmallboxError(f"{ids_json}: image {im['id']} ({im['file_name']!r}) is not in {folder} "
                                f"({missing} of the json's {len(dataset.images)} images are not there)")
        found[im["id"]] = Path(os.path.abspath(path))
    used = set(found.values())
    left_out = [f for f in files if Path(os.path.abspath(f)) not in used]
    return ImageIndex(list(dataset.images), found, dataset.category_ids, "json", ids_json, left_out)


def default_category_ids(nc: int, known=None) -> list[int]:
    """Category id of each class index: ``known`` (the data's, ascending) when it has one per
    class, else ``1..nc`` as Ultralytics numbers its own COCO results."""
    if known is not None and len(known) == nc:
        return list(known)
    return list(range(1, nc + 1))


def write_images_json(out_dir, index: ImageIndex, categories: list[dict], predictions=None) -> Path:
    """The COCO json of a folder's images and ids (rule 3), beside its predictions:
    ``images.json`` in a run folder, else named after the predictions file (``preds.json`` ->
    ``preds.images.json``), so two outputs in one folder each keep their own."""
    return write_json_atomic(index.to_coco(categories), images_json_path(out_dir, predictions))


def images_json_path(out_dir, predictions=None) -> Path:
    """Where :func:`write_images_json` writes: ``OUT_DIR/images.json``, or beside ``predictions``
    under its name (``preds.json.gz`` -> ``preds.images.json``)."""
    if predictions is None:
        return Path(out_dir) / IMAGES_JSON
    predictions = Path(predictions)
    return predictions.with_name(predictions.name.split(".")[0] + "." + IMAGES_JSON)


def check_folder_numbering(predictions, gt_images: list[dict]) -> None:
    """Predictions numbered 1..N over a folder (rule 3: an images json beside them) scored against
    a ground truth whose ids are also 1..N would match id to id whatever the order: the ids are
    checked to name the same files (base names) in both, and a mismatch is an error.

    Raises:
        SmallboxError: an id names another file in the predictions' images json than in the ground truth.
    """
    predictions = Path(predictions)
    for candidate in (images_json_path(predictions.parent, predictions), predictions.parent / IMAGES_JSON):
        if candidate.is_file():
            theirs = {im.get("id"): im.get("file_name") for im in (read_json(candidate).get("images") or [])
                      if isinstance(im, dict)}
            break
    else:
        return
    base = lambda name: PurePosixPath(str(name).replace("\\", "/")).name  # noqa: E731
    differ = [(im["id"], theirs[im["id"]], im["file_name"]) for im in gt_images
              if im.get("id") in theirs and base(theirs[im["id"]]) != base(im.get("file_name"))]
    if differ:
        image_id, their_name, gt_name = differ[0]
        raise SmallboxError(
            f"{predictions}: its image ids number a folder's files 1..N ({candidate}), and {len(differ):,} of them name "
            f"another file in the ground truth (id {image_id}: {their_name} in the predictions, {gt_name} in the ground "
            "truth): scored as they stand, boxes would be matched to the wrong images. Predict again with the ground "
            f"truth (--gt / --coco / {IMAGE_IDS_ENV}=GT.json) so that the ids are its own")


def linked_image_folder(gt: CocoDataset, image_root, folder) -> Path:
    """A flat folder holding exactly the images of ``gt`` (hard links, else copies, named by their
    base name), so that a command that predicts a whole folder (``yolo predict``, which does not
    look into sub-folders) runs on them alone; their ids then come from ``gt`` by base name (rule
    1). Remade when ``gt`` names other files."""
    import shutil
    from collections import Counter

    folder = Path(folder)
    stamp = folder / ".smallbox-images.json"
    wanted = sorted(im["file_name"] for im in gt.images)
    names = Counter(PurePosixPath(n.replace("\\", "/")).name for n in wanted)
    twice = [n for n, k in names.items() if k > 1]
    if twice:
        raise SmallboxError(f"{gt.path}: {len(twice)} base name(s) used by two images in different folders (e.g. {twice[0]}): "
                            "give each image its own file name")
    if stamp.is_file() and read_json(stamp) == {"root": str(image_root), "files": wanted}:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in wanted:
        source, target = Path(image_root) / name, folder / PurePosixPath(name.replace("\\", "/")).name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    write_json_atomic({"root": str(image_root), "files": wanted}, stamp)
    return folder
