"""Image files as Ultralytics sees them: which files of a folder are images, and an image's size
after its EXIF orientation is applied (Ultralytics' ``cv2.imread`` applies it; ``PIL.Image.size``
does not)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import SmallboxError

# ultralytics.data.utils.IMG_FORMATS (8.4): files with other suffixes are skipped there.
IMAGE_SUFFIXES = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})
# EXIF orientations 5-8 rotate the picture by 90 or 270 degrees: width and height swap.
EXIF_ORIENTATION_TAG = 0x0112
SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def is_image_name(name: str) -> bool:
    return name.rpartition(".")[-1].lower() in IMAGE_SUFFIXES and "." in name


def list_images(folder) -> list[Path]:
    """The images of a folder exactly as ``yolo predict source=FOLDER`` lists them: files directly
    in it (no sub-folders, no dot-files) whose suffix Ultralytics reads, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmallboxError(f"{folder}: image folder does not exist")
    files = sorted(glob.glob(os.path.join(glob.escape(str(folder.absolute())), "*.*")))
    return [Path(f) for f in files if is_image_name(f) and os.path.isfile(f)]


def image_size(path) -> tuple[int, int]:
    """``(width, height)`` of the image as loaded with its EXIF orientation applied."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except FileNotFoundError:
        raise SmallboxError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise SmallboxError(f"{path}: cannot read image ({e})") from None
    return (height, width) if orientation in SWAPPING_ORIENTATIONS else (width, height)
