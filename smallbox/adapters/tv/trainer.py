"""``smallbox tv train``: a recipe -> a run folder.

Run folder (``train.project/train.name``)::

    recipe.yaml        the resolved settings
    results.csv        one row per epoch: losses, lr, coco/AP ... coco/AR_100, <set>/AP_small ...
    results.png        AP curves
    last.pt, best.pt   checkpoints (best by eval.best_metric); resume with train.resume=.../last.pt
    predictions.json   COCO results of best.pt on the val split, original ids
    smallbox.json      what the run was (contract shared with the YOLO path)
"""

from __future__ import annotations

import copy
import csv
import io
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ...callbacks.coco_metrics import flatten_metrics, metric_columns
from ...datasets import SizeBuckets, load_coco
from ...errors import SmallboxError
from ...evaluate import evaluate
from ...fileio import atomic_path, write_text_atomic
from ...predictions import write_predictions
from ...runfolder import PREDICTIONS_JSON, RESULTS_CSV, TV_RECIPE, write_run_info
from ..size_weighting import SizeWeighting
from . import dist
from .data import CocoDetection, build_augmentation, collate, filter_by_area, seed_worker
from .engine import build_optimizer, lr_factor, predict, train_one_epoch
from .losses import BoxSizeWeights
from .models import TORCHVISION_FIRST_ANCHOR, anchor_sizes_of, build_model, load_detector_weights
from .plots import plot_results
from .recipe import DEFAULTS, apply_overrides, dump_recipe, load_recipe

TRAINING_STATE = ("optimizer", "scheduler", "scaler")  # what last.pt holds for a resume; best.pt leaves it out

class Data:
    """The train and val splits of a recipe, their classes and size bucket sets."""

    def __init__(self, cfg: dict):
        d = cfg["data"]
        for key in ("train", "val"):
            if not d[key]:
                raise SmallboxError(f"data.{key}: a COCO json is required (e.g. data.{key}=annotations/{key}.json)")
        train = load_coco(d["train"], d["train_images"] or d["images"], d["out_of_bounds"])
        val = load_coco(d["val"], d["val_images"] or d["images"], d["out_of_bounds"])
        if sorted(c["id"] for c in val.categories) != train.category_ids:
            raise SmallboxError(f"{d['val']}: categories differ from those of {d['train']}")
        self.categories = sorted(train.categories, key=lambda c: c["id"])
        self.category_ids = train.category_ids
        self.train_coco = filter_by_area(train, d["area_range"], d["keep_empty"])
        # Val keeps every image (predictions cover them all); only the boxes scored are filtered.
        self.val_coco = filter_by_area(val, d["area_range"], keep_empty=True)
        self.bucket_sets = bucket_sets(cfg["eval"]["buckets"], train.areas())
        self.train = CocoDetection(self.train_coco, self.category_ids, build_augmentation(cfg["aug"], train=True))
        self.val = CocoDetection(self.val_coco, self.category_ids)


def bucket_sets(specs, train_areas) -> list[SizeBuckets]:
    """``eval.buckets`` (``fit``, ``coco``, ``"A,B"``) -> SizeBuckets, fitted on the training boxes."""
    specs = [specs] if isinstance(specs, str) else list(specs or [])
    return [SizeBuckets.parse(s, train_areas) for s in specs if s != "coco"]


def size_weights(cfg: dict, train_areas) -> BoxSizeWeights | None:
    """``loss.size_weights`` -> the shared rule (:class:`~smallbox.adapters.size_weighting.SizeWeighting`:
    thresholds, weights, renorm, default true), ``thresholds: fit`` fitted on ``train_areas``."""
    spec = cfg["loss"]["size_weights"]
    if not spec:
        return None
    if not isinstance(spec, dict) or "weights" not in spec:
        raise SmallboxError("loss.size_weights takes thresholds (coco | fit | [A, B]), weights ([small, medium, large]) "
                            f"and renorm (true | false); got {spec}")
    thresholds = spec.get("thresholds", "coco")
    if isinstance(thresholds, (list, tuple)):
        thresholds = ",".join(str(t) for t in thresholds)
    try:
        buckets = SizeBuckets.parse(str(thresholds), train_areas)
    except SmallboxError as e:
        raise SmallboxError(f"loss.size_weights.thresholds: {e}") from None
    weighting = SizeWeighting.from_config({**spec, "thresholds": list(buckets.thresholds)}, "recipe", key="loss.size_weights")
    return BoxSizeWeights.from_weighting(weighting)


def run_dir(cfg: dict, recipe_path) -> Path:
    """``project/name``, numbered ``name2``, ``name3`` ... when taken (unless ``exist_ok``)."""
    t = cfg["train"]
    name = t["name"] or Path(recipe_path).stem
    base = Path(t["project"]) / name
    if t["exist_ok"] or not base.exists():
        return base
    n = 2
    while base.with_name(f"{name}{n}").exists():
        n += 1
    return base.with_name(f"{name}{n}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SmallboxError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a YOLO checkpoint (pickled classes), a text file, a truncated file
        raise SmallboxError(f"{path}: not a smallbox tv checkpoint (a YOLO best.pt goes to smallbox yolo)") from None
    if not isinstance(ckpt, dict) or "recipe" not in ckpt or "model" not in ckpt:
        raise SmallboxError(f"{path}: not a smallbox tv checkpoint (no recipe/model inside)")
    return ckpt


def model_from_checkpoint(ckpt: dict, model_settings: dict | None = None):
    """The checkpoint's model with its weights, built from ``model_settings`` (default: the
    checkpoint's own; pass changed test settings such as ``nms_thresh`` here)."""
    m = model_settings or ckpt["recipe"]["model"]
    # a checkpoint whose recipe leaves anchor_sizes unset was written when unset meant torchvision's
    # 32 px anchors (training now records the sizes it used)
    model = build_model(m, len(ckpt["classes"]), read_weights=False, unset_anchor_first=TORCHVISION_FIRST_ANCHOR)
    model.load_state_dict(ckpt["model"])
    return model


class Trainer:
    """Everything of one run; :meth:`fit` trains, evaluates every ``eval.interval`` epochs and
    writes the run folder on rank 0."""

    def __init__(self, cfg: dict, recipe_path, resume: dict | None = None):
        self.cfg, self.t = cfg, cfg["train"]
        self.ctx = dist.setup(self.t["device"])
        seed_everything(int(self.t["seed"]) + self.ctx.rank)
        self.data = Data(cfg)
        self.dir = Path(resume["run_dir"]) if resume else run_dir(cfg, recipe_path)
        weights = size_weights(cfg, self.data.train_coco.areas())
        self.model = build_model(cfg["model"], len(self.data.category_ids), weights).to(self.ctx.device)
        if not cfg["model"]["anchor_sizes"]:  # the default, recorded in the run's recipe and checkpoints
            cfg["model"]["anchor_sizes"] = anchor_sizes_of(self.model)
            why = ("torchvision's, which model.weights was trained with" if cfg["model"]["weights"]
                   else "one octave below torchvision's 32 px, for small boxes")
            self.log(f"model.anchor_sizes unset: {cfg['model']['anchor_sizes']} px ({why})")
        if cfg["model"]["init_from"] and not resume:
            skipped = load_detector_weights(self.model, cfg["model"]["init_from"], "model.init_from")
            self.log(f"initialised from {cfg['model']['init_from']} ({len(skipped)} tensors of another shape left as built)")
        self.optimizer = build_optimizer(self.model, self.t)
        self.loader = self.train_loader()
        iters = min(len(self.loader), self.t["limit_batches"] or len(self.loader))
        total = iters * self.t["epochs"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(it, self.t, iters, total))
        self.scaler = torch.amp.GradScaler("cuda", enabled=bool(self.t["amp"]) and self.ctx.device.type == "cuda")
        self.last_eval: tuple[int | None, list] = (None, [])
        self.start_epoch, self.best, self.rows = 1, {"metric": cfg["eval"]["best_metric"], "value": None, "epoch": None}, []
        self.columns = metric_columns(self.data.bucket_sets)
        if self.best["metric"] not in self.columns:
            raise SmallboxError(f"eval.best_metric: {self.best['metric']!r} is not one of {', '.join(self.columns)}")
        if resume:
            self.restore(resume)
        self.ddp_model = self.wrap_ddp()

    def log(self, msg: str) -> None:
        if self.ctx.main:
            print(msg, flush=True)

    def wrap_ddp(self):
        if not self.ctx.distributed:
            return self.model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def train_loader(self) -> DataLoader:
        ds = self.data.train
        if self.ctx.distributed:
            sampler = DistributedSampler(ds, shuffle=True, seed=int(self.t["seed"]))
        else:
            sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(int(self.t["seed"])))
        return DataLoader(ds, batch_size=self.t["batch"], sampler=sampler, num_workers=self.t["workers"],
                          collate_fn=collate, pin_memory=self.ctx.device.type == "cuda", worker_init_fn=seed_worker)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle reproducibly per epoch (also after a resume)."""
        sampler = self.loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(int(self.t["seed"]) * 1000 + epoch)

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, epoch: int) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "best": dict(self.best),
                "recipe": self.cfg, "classes": [{"category_id": c["id"], "name": c["name"]} for c in self.data.categories],
                "buckets": [b.to_dict() for b in [SizeBuckets.coco(), *self.data.bucket_sets]], "rows": self.rows}

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.best, self.rows = dict(ckpt["best"]), list(ckpt["rows"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.log(f"resuming {self.dir} at epoch {self.start_epoch}/{self.t['epochs']}")

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> Path:
        if self.ctx.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(dump_recipe(self.cfg), self.dir / TV_RECIPE)
            self.write_run_info(predictions=None)
        self.log(f"{self.cfg['model']['arch']} {self.cfg['model']['backbone']}: {len(self.data.train)} train / "
                 f"{len(self.data.val)} val images, {len(self.data.category_ids)} classes, device {self.ctx.device}"
                 f"{f' x{self.ctx.world}' if self.ctx.distributed else ''} -> {self.dir}")
        for epoch in range(self.start_epoch, self.t["epochs"] + 1):
            self.set_epoch(epoch)
            start = time.time()
            losses = train_one_epoch(self.ddp_model, self.optimizer, self.scheduler, self.scaler, self.loader, self.ctx, self.t, epoch)
            metrics = None
            if self.evaluates(epoch):
                metrics, preds = self.validate()
                self.last_eval = (epoch, preds)
            if self.ctx.main:
                self.end_epoch(epoch, losses, metrics, time.time() - start)
            dist.barrier(self.ctx)
        self.finish()
        dist.teardown(self.ctx)
        return self.dir

    def evaluates(self, epoch: int) -> bool:
        return epoch % max(1, int(self.cfg["eval"]["interval"])) == 0 or epoch == self.t["epochs"]

    def validate(self, model=None) -> tuple[dict | None, list[dict]]:
        """(metrics on rank 0 -- None elsewhere, predictions)."""
        if model is None:
            dist.sync_buffers(self.ctx, self.model)
        preds = predict(model or self.model, self.data.val, self.ctx, self.data.category_ids, self.cfg["eval"]["batch"])
        if not self.ctx.main:
            return None, preds
        return evaluate(self.data.val_coco, preds, self.data.bucket_sets), preds

    def end_epoch(self, epoch: int, losses: dict, metrics, seconds: float) -> None:
        row = {"epoch": epoch, **{f"train/{k}": round(v, 5) for k, v in losses.items()},
               "lr": float(f"{self.optimizer.param_groups[0]['lr']:.6g}")}
        row.update({c: "" for c in self.columns})
        if metrics:
            row.update({k: round(v, 5) for k, v in flatten_metrics(metrics, self.data.bucket_sets).items()})
        row["time"] = round(seconds, 1)
        self.rows.append(row)
        self.write_results()
        value = row[self.best["metric"]]
        improved = metrics is not None and (self.best["value"] is None or value > self.best["value"])
        if improved:
            self.best.update(value=value, epoch=epoch)
        ckpt = self.checkpoint(epoch)
        save_atomic(ckpt, self.dir / "last.pt")
        if improved:  # the model to use: without the training state only last.pt resumes from (half the size)
            save_atomic({k: v for k, v in ckpt.items() if k not in TRAINING_STATE}, self.dir / "best.pt")
        if metrics:
            m = metrics
            self.log(f"epoch {epoch}: AP {m['AP']:.4f} AP50 {m['AP50']:.4f} AP_small {m['AP_small']:.4f} "
                     f"AP_medium {m['AP_medium']:.4f} AP_large {m['AP_large']:.4f}  best {self.best['metric']} "
                     f"{self.best['value']:.4f} (epoch {self.best['epoch']})")

    def write_results(self) -> None:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(out.getvalue(), self.dir / RESULTS_CSV)
        plot_results(self.rows, self.columns, self.dir / "results.png")

    def finish(self) -> None:
        """Predictions of best.pt on val -> predictions.json; smallbox.json."""
        # Only rank 0 tracks the best epoch: every rank must take the same branch.
        if self.last_eval[0] == dist.from_main(self.ctx, self.best["epoch"]):
            preds = self.last_eval[1]  # best.pt is the model just evaluated
        else:
            dist.barrier(self.ctx)
            best = self.dir / "best.pt"
            if best.is_file():
                self.model.load_state_dict(load_checkpoint(best)["model"])
            preds = self.validate()[1]
        if self.ctx.main:
            write_predictions(preds, self.dir / PREDICTIONS_JSON)
            self.write_run_info(predictions=PREDICTIONS_JSON)
            self.log(f"best {self.best['metric']} {self.best['value']} at epoch {self.best['epoch']}; "
                     f"wrote {self.dir / 'predictions.json'} ({len(preds)} boxes)")

    def write_run_info(self, predictions) -> None:
        m = self.cfg["model"]
        info = {"path": "tv", "model": m["arch"], "backbone": m["backbone"],
                "backbone_weights": m["backbone_weights"] or m["weights"] or m["init_from"] or "random init",
                "imgsz": int(m["max_size"]),
                "epochs": int(self.t["epochs"]), "seed": int(self.t["seed"]), "data": str(self.cfg["data"]["train"]),
                "val": str(self.cfg["data"]["val"]),
                "buckets": [b.to_dict() for b in [SizeBuckets.coco(), *self.data.bucket_sets]],
                "predictions": predictions, "best": self.best,
                "evaluation": {"score_thresh": m["score_thresh"], "nms_thresh": m["nms_thresh"],
                               "detections_per_img": m["detections_per_img"], "min_size": m["min_size"],
                               "max_size": m["max_size"]}}
        write_run_info(self.dir, info)


def train(recipe_path, overrides=()) -> Path:
    """Train a recipe with ``key.sub=value`` overrides. With ``train.resume=RUN/last.pt`` (or a
    checkpoint in place of the recipe) the run continues in RUN with the checkpoint's settings,
    the overrides applied on top (e.g. ``train.epochs=24`` to train longer)."""
    recipe_path = Path(recipe_path)
    if recipe_path.suffix == ".pt":
        overrides = [f"train.resume={recipe_path}", *overrides]
        cfg = apply_overrides(copy.deepcopy(DEFAULTS), overrides, recipe_path)
    else:
        cfg = load_recipe(recipe_path, overrides)
    if not cfg["train"]["resume"]:
        return Trainer(cfg, recipe_path).fit()
    ckpt_path = Path(cfg["train"]["resume"])
    resume = load_checkpoint(ckpt_path)
    if any(k not in resume for k in TRAINING_STATE):
        raise SmallboxError(f"{ckpt_path}: holds the weights only (best.pt leaves the training state out): resume from "
                            f"{ckpt_path.parent / 'last.pt'}, or start a new run from these weights with model.init_from=")
    cfg = apply_overrides(copy.deepcopy(resume["recipe"]), overrides, ckpt_path)
    resume["run_dir"] = str(ckpt_path.parent)
    return Trainer(cfg, recipe_path, resume).fit()
