"""smallbox: make small objects detectable and measurable.

Stages, each a subpackage reading and writing standard files:
``datasets`` (COCO json in, validated, analysed, converted) -> ``adapters`` / ``callbacks``
(what plugs into Ultralytics or torchvision) -> ``evaluate`` (COCO AP by size, exports,
ensembling, comparison).
"""

__version__ = "0.1.0"
