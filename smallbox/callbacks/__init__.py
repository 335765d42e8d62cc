"""What runs inside a training loop: per-epoch COCO metrics against the original json
(``coco_metrics``: the results.csv columns), the input-geometry log at the start
(``geometry``), and the end-of-run export of predictions and ``smallbox.json`` (``export``)."""
