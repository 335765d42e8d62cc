"""smallbox: make small objects detectable and measurable.

Stages, each a subpackage reading and writing standard files:
``datasets`` (COCO json in, validated, analysed, converted) -> ``adapters`` / ``callbacks``
(what plugs into Ultralytics or torchvision) -> ``evaluate`` (COCO AP by size, exports,
ensembling, comparison).
"""


def __getattr__(name: str):
    """``__version__``: pyproject.toml's version, as the installed package's metadata records it
    (read on first use, so importing smallbox costs nothing for it)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smallbox")
    except PackageNotFoundError:  # a source tree on sys.path that was never pip-installed
        return "0+unknown (not installed: pip install -e .)"
