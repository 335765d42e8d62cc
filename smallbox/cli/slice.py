"""``smallbox slice MODEL --images DIR --out preds.json``: sliced (tiled) inference of a YOLO or
torchvision model, exported as COCO results with the original ids."""

from __future__ import annotations

from ..datasets import SizeBuckets, SmallboxError, load_coco
from ..datasets.boxes import xyxy_abs_to_xywh_abs
from ..evaluate import write_json_atomic
from ..evaluate.members import ImageSet
from ..offline import apply_offline_defaults


def add_arguments(p):
    p.add_argument("model", help="YOLO weights (.pt) or model .yaml, or a `smallbox tv` checkpoint (best.pt)")
    p.add_argument("--images", required=True, help="folder of the images")
    p.add_argument("--out", required=True, help="COCO results json")
    p.add_argument("--gt", help="COCO json of the images: original image ids (by file_name) and category ids; "
                                "without it, id = file stem and category id = class index")
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels (SAHI's slice_height/width)")
    p.add_argument("--overlap", type=float, default=0.2, help="tile overlap ratio")
    p.add_argument("--no-full", action="store_true", help="tiles only, no prediction on the whole image")
    p.add_argument("--merge", choices=("greedy", "nms"), default="greedy",
                   help="greedy: merge matches into the best box (SAHI's GREEDYNMM); nms: drop them")
    p.add_argument("--match-metric", choices=("ios", "iou"), default="ios", help="intersection over smaller / union")
    p.add_argument("--match-thr", type=float, default=0.5, help="boxes match when metric >= this")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold of the model")
    p.add_argument("--iou", type=float, default=0.7, help="YOLO: the model's own NMS IoU")
    p.add_argument("--imgsz", type=int, default=None, help="YOLO: inference size (default: the tile size)")
    p.add_argument("--device", default=None, help="cpu, 0, cuda:0 ... (default: Ultralytics' / torch's choice)")
    p.add_argument("--eval", action="store_true", help="with --gt: print AP by size of the result")


def run(args) -> int:
    apply_offline_defaults()
    from tqdm import tqdm

    from ..adapters.sliced import load_predict_fn, predict_sliced

    gt = load_coco(args.gt, image_root=args.images) if args.gt else None
    image_set = ImageSet.from_coco(gt) if gt else ImageSet.from_folder(args.images)
    category_ids = image_set.category_ids
    predict_fn = load_predict_fn(args.model, args.conf, args.imgsz or args.tile, args.device, args.iou)
    preds = []
    for image in tqdm(image_set.images, desc="slice", dynamic_ncols=True):
        pixels = _read_bgr(gt.image_path(image) if gt else _folder_path(args.images, image))
        boxes, scores, labels = predict_sliced(pixels, predict_fn, args.tile, args.overlap, not args.no_full,
                                               args.merge, args.match_metric, args.match_thr)
        preds += _to_coco(image["id"], boxes, scores, labels, category_ids, args.model)
    write_json_atomic(preds, args.out)
    print(f"{len(preds)} boxes on {len(image_set.images)} images -> {args.out}")
    if args.eval:
        if gt is None:
            raise SmallboxError("--eval needs --gt")
        from .ensemble import format_eval_rows

        print(format_eval_rows([(f"sliced {args.tile}px", preds)], gt, SizeBuckets.coco()))
    return 0


def _folder_path(folder, image):
    from pathlib import Path

    return Path(folder) / image["file_name"]


def _read_bgr(path):
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise SmallboxError(f"{path}: cannot read image")
    return pixels


def _to_coco(image_id, boxes, scores, labels, category_ids, model) -> list[dict]:
    if category_ids is not None and len(labels) and labels.max() >= len(category_ids):
        raise SmallboxError(f"{model}: predicts class {labels.max()} but the ground truth has "
                            f"{len(category_ids)} categories")
    xywh = xyxy_abs_to_xywh_abs(boxes).tolist()
    cats = [category_ids[i] for i in labels.tolist()] if category_ids is not None else labels.tolist()
    return [{"image_id": image_id, "category_id": c, "bbox": b, "score": float(s)}
            for b, c, s in zip(xywh, cats, scores.tolist())]
