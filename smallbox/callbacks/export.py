"""End of a prediction or training run: the exported predictions (``predictions.json`` with the
original ids, ``predictions.csv`` in the competition format) and ``smallbox.json``, the run's
description (:mod:`smallbox.runfolder`)."""

from __future__ import annotations

from pathlib import Path

from ..datasets.manifest import manifest_of_data_file
from ..predictions import write_competition_csv, write_predictions
from ..runfolder import PREDICTIONS_CSV, PREDICTIONS_JSON, write_run_info


def export_predictions(out_dir, preds: list[dict], file_names: dict, category_ids: list[int]) -> tuple[Path, Path]:
    """Write ``predictions.json`` and ``predictions.csv`` into ``out_dir`` (each atomically).

    Args:
        file_names: ``{image id: file name}``: the CSV's rows, one per image, in this order.
        category_ids: every category id (the CSV's label is the position in ascending order).
    """
    out_dir = Path(out_dir)
    json_path = write_predictions(preds, out_dir / PREDICTIONS_JSON)
    csv_path = write_competition_csv(preds, out_dir / PREDICTIONS_CSV, file_names, category_ids)
    return json_path, csv_path


def yolo_run_info(trainer) -> dict:
    """What ``smallbox.json`` says about an Ultralytics training run of smallbox's trainer."""
    manifest = manifest_of_data_file(trainer.args.data)
    validator = trainer.validator
    evaluator = getattr(validator, "coco_eval", None)
    save_dir = Path(trainer.save_dir)
    model = str(getattr(trainer, "run_model", trainer.args.model))  # a resumed run: the model it started from
    return {"path": "yolo", "model": model, "backbone": backbone_name(trainer.model),
            "backbone_weights": backbone_weights(trainer.model, model),
            "imgsz": int(trainer.args.imgsz), "epochs": int(trainer.epochs), "seed": int(trainer.args.seed),
            "data": str(trainer.args.data), "val": str(evaluator.gt.path) if evaluator else None,
            "buckets": [b.to_dict() for b in manifest.buckets] if manifest else [],
            "predictions": PREDICTIONS_JSON if (save_dir / PREDICTIONS_JSON).exists() else None,
            "evaluation": validator.evaluation_settings() if hasattr(validator, "evaluation_settings") else None,
            "best": {"metric": getattr(validator, "fitness_key", None) or "fitness", "value": _float(trainer.best_fitness),
                     "epoch": _best_epoch(trainer)}}


def _best_epoch(trainer) -> int | None:
    """The epoch best.pt holds (1-based): Ultralytics rewrites best.pt whenever an epoch's fitness
    equals the best so far, and its stopper records the last such epoch."""
    epoch = getattr(getattr(trainer, "stopper", None), "best_epoch", None)
    return int(epoch) if isinstance(epoch, int) and epoch > 0 else None


def on_train_end(trainer) -> None:
    """Ultralytics callback: write ``smallbox.json`` once the final validation of best.pt has
    exported its predictions (``final_eval`` runs just before ``on_train_end``)."""
    from ultralytics.utils import RANK

    if RANK in {-1, 0}:
        write_run_info(trainer.save_dir, yolo_run_info(trainer))


def backbone_name(model) -> str:
    """The model's first layer as written in its YAML: ``ultralytics`` for Ultralytics' own
    backbones, else the module and its first string argument, e.g. ``TimmBackbone(swin_tiny...)``."""
    from ultralytics.utils.torch_utils import unwrap_model

    yaml = getattr(unwrap_model(model), "yaml", None) or {}
    layers = yaml.get("backbone") or []
    if not layers:
        return "unknown"
    _, _, module, args = layers[0][:4]
    name = next((a for a in args if isinstance(a, str)), None) if isinstance(args, list) else None
    return f"{module}({name})" if name else ("ultralytics" if module == "Conv" else str(module))


def backbone_weights(model, model_arg) -> str:
    """Where the backbone's weights came from: the files smallbox's timm layers record
    (``pretrained_from``), else the checkpoint the run started from, else "random init"."""
    from ultralytics.utils.torch_utils import unwrap_model

    files = [m.pretrained_from for m in unwrap_model(model).modules() if getattr(m, "pretrained_from", None)]
    if files:
        return ", ".join(files)
    return f"checkpoint {model_arg}" if str(model_arg).endswith(".pt") else "random init"


def _float(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
