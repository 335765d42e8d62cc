"""Image files as Ultralytics sees them: which files of a folder are images, and an image's size
as Ultralytics' loader returns it (``cv2.imdecode``, which applies the EXIF orientation; a phone
photo stored 4032x3024 with orientation 6 is loaded 3024x4032, while ``PIL.Image.size`` says
4032x3024)."""

from __future__ import annotations

import glob
import os
import struct
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
    """``(width, height)`` of the image as Ultralytics loads it, EXIF orientation applied.

    PNG chunks are walked directly (size from IHDR, orientation from an eXIf chunk before or
    after the pixel data; OpenCV applies either): PIL's ``getexif()`` decodes a whole PNG to
    look for one. Other formats go through PIL as ``ultralytics.data.utils.exif_size`` does;
    those whose decoders disagree on rotation (WebP, TIFF) are decoded with OpenCV to be sure.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(READ_BYTES)
            png = _png_size(head, f) if head.startswith(PNG_SIGNATURE) else None
    except FileNotFoundError:
        raise SmallboxError(f"{path}: no such image file") from None
    except OSError as e:
        raise SmallboxError(f"{path}: cannot read image ({e})") from None
    return png if png is not None else _pil_size(path)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
READ_BYTES = 4096  # a small PNG whole, or the header chunks of a large one
# Formats whose header size PIL and OpenCV rotate alike (Ultralytics' exif_size trusts them too).
ROTATE_BY_HEADER = frozenset({"JPEG", "MPO", "PNG", "AVIF"})


def _png_size(buf: bytes, f) -> tuple[int, int] | None:
    """Size from IHDR, swapped when an eXIf chunk says 5-8; None for a malformed file (PIL then
    says what is wrong). ``buf`` is the start of the file; further chunk headers are read as
    needed, skipping the pixel data."""
    if buf[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", buf[16:24])
    start, pos = 0, len(PNG_SIGNATURE)
    while True:
        if pos + 8 > start + len(buf):  # the next chunk header lies beyond what was read
            f.seek(pos)
            start, buf = pos, f.read(READ_BYTES)
            if len(buf) < 8:
                return None
        length, kind = struct.unpack_from(">I4s", buf, pos - start)
        if kind == b"IEND":
            return width, height
        if kind == b"eXIf":
            f.seek(pos + 8)
            orientation = _exif_orientation(f.read(length))
            return (height, width) if orientation in SWAPPING_ORIENTATIONS else (width, height)
        pos += 12 + length


def _exif_orientation(exif: bytes) -> int:
    from PIL import Image

    try:
        tags = Image.Exif()
        tags.load(exif)
        return tags.get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block: OpenCV ignores it as well
        return 1


def _pil_size(path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            orientation = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as e:
        # ImportError: once Ultralytics is imported, PIL's open falls back to pi_heif (HEIC) for a
        # file it cannot identify, and fails to import it where that package is not installed
        raise SmallboxError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    if orientation not in SWAPPING_ORIENTATIONS:
        return size
    if fmt in ROTATE_BY_HEADER:
        return size[1], size[0]
    return _decoded_size(path)


def _decoded_size(path) -> tuple[int, int]:
    """Decode as Ultralytics' ``imread`` does: the only sure answer for WebP and TIFF."""
    import cv2
    import numpy as np

    pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise SmallboxError(f"{path}: cannot read image (OpenCV cannot decode it)")
    return pixels.shape[1], pixels.shape[0]
