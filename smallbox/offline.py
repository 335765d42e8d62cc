"""Offline defaults for Ultralytics, applied before it is first imported.

Ultralytics reads these environment variables at import time: with them nothing downloads or
pip-installs, and no step waits on a network that is not there.

- ``YOLO_OFFLINE=1``: every download fails fast and usage analytics stay off.
- ``YOLO_AUTOINSTALL=false``: a missing package is an error instead of a ``pip install``.
- ``HF_HUB_OFFLINE=1``: timm / huggingface_hub read only their local cache.
- ``NO_ALBUMENTATIONS_UPDATE=1``: albumentations does not ask pypi.org for a newer version.
- ``RAY_USAGE_STATS_ENABLED=0``: Ray (``smallbox experiments run --ray``) sends no usage report.
- ``YOLO_CONFIG_DIR``: a writable settings folder (Ultralytics' default when writable, else a
  private one under the temp folder).
- A font named ``Arial.ttf`` / ``Arial.Unicode.ttf`` in that folder (matplotlib's DejaVu Sans,
  copied), so that plotting never tries to download Arial.

A variable the user has already set is left as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def apply_offline_defaults() -> Path:
    """Set the offline environment (idempotent) and return Ultralytics' settings folder."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "ultralytics" in sys.modules:  # too late to change where it looks; use what it picked
        from ultralytics.utils import USER_CONFIG_DIR

        config_dir = Path(USER_CONFIG_DIR)
    else:
        config_dir = _writable_config_dir()
    _install_font(config_dir)
    return config_dir


def _writable_config_dir() -> Path:
    """``$YOLO_CONFIG_DIR/Ultralytics`` as Ultralytics will resolve it, made writable."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        base = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    folder = base / "Ultralytics"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            os.environ.setdefault("YOLO_CONFIG_DIR", str(base))
            return folder
    except OSError:
        pass
    base = Path(tempfile.gettempdir()) / f"smallbox-ultralytics-{os.getuid() if hasattr(os, 'getuid') else 0}"
    (base / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(base)
    return base / "Ultralytics"


def _install_font(config_dir: Path) -> None:
    """Copy matplotlib's bundled DejaVu Sans under the names Ultralytics looks up (importing
    matplotlib costs a third of a second: only when a font is missing)."""
    if all((config_dir / name).exists() for name in FONT_NAMES):
        return
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in FONT_NAMES:
            target = config_dir / name
            if not target.exists() and source.exists():
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
    except OSError:  # a read-only folder: plots fall back to PIL's default font
        pass
