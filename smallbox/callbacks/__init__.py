"""What runs inside a training loop: per-epoch COCO metrics, logging."""
