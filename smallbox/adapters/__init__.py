"""What plugs into Ultralytics or torchvision: backbones, losses, models."""
