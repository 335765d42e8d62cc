"""The one line a predicting command (``yolo predict``, ``slice``) prints about its speed, and its
reader: the experiment runner records predict ms/image from it."""

from __future__ import annotations

import re

TIMING = re.compile(r"smallbox: \d+ images? predicted in [\d.]+ s \(([\d.]+) ms/image")


def speed_line(n_images: int, seconds: float, warm_up: int = 0) -> str:
    """``warm_up``: images predicted before the clock started (the first batch), said so that the
    count is not read as the number of images predicted."""
    left_out = f"the first {warm_up} image(s) (warm-up) and model loading" if warm_up else "model loading"
    return (f"smallbox: {n_images} images predicted in {seconds:.2f} s "
            f"({1000 * seconds / max(n_images, 1):.1f} ms/image; {left_out} excluded)")


def ms_per_image(text: str) -> float | None:
    """The last speed line's ms/image in ``text`` (a command's log), or None."""
    found = TIMING.findall(text)
    return float(found[-1]) if found else None
