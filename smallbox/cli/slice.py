"""``smallbox slice MODEL --images DIR --out preds.json``: sliced (tiled) inference of a YOLO or
torchvision model, exported as COCO results with the original ids."""

from __future__ import annotations

from pathlib import Path

from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..offline import apply_offline_defaults
from ..predictions import (IMAGES_JSON, default_category_ids, index_folder, to_coco_results, write_images_json,
                           write_predictions)
from ..fusion.sliced import DEFAULT_BATCH
from .options import add_size_options, refuse_output_onto_inputs, check_device, checkpoint_kind, max_dets_for, number, output_file

MODEL_SUFFIXES = (".pt", ".yaml", ".yml", ".onnx", ".torchscript")


def add_arguments(p):
    p.add_argument("model", help="YOLO weights (.pt) or model .yaml, or a `smallbox tv` checkpoint (best.pt)")
    p.add_argument("--images", required=True, help="folder of the images")
    p.add_argument("--out", required=True, type=output_file, help="COCO results json (.json or .json.gz)")
    p.add_argument("--gt", help="COCO json of the images: its image ids (matched by file_name) and category ids; the "
                                "json's images are predicted (each must be in the folder; other files are left out). "
                                f"Without it: $SMALLBOX_IMAGE_IDS, else ids 1..N by file name (OUT.images.json is "
                                "written beside --out) and the model's category ids (1..nc when it knows none)")
    p.add_argument("--tile", type=number(int, 1), default=None,
                   help="tile side in pixels (SAHI's slice_height/width, 512 in SAHI); default: the tile size of a model "
                        "trained on tiles (smallbox convert --tiles), else 640")
    p.add_argument("--overlap", type=float, default=0.2, help="tile overlap ratio, in [0, 1)")
    p.add_argument("--full", choices=("auto", "always", "never"), default="auto",
                   help="also predict the whole image: auto (unless it shows objects more than 1.5x smaller than the model "
                        "saw them in training), always, never")
    p.add_argument("--no-full", dest="full", action="store_const", const="never", help="tiles only (= --full never)")
    p.add_argument("--merge", choices=("edge", "nms", "greedy"), default="edge",
                   help="edge: drop tile boxes cut by an inner tile edge that lie half inside a box that was not cut, then "
                        "nms; nms: drop the lower-scored of matching boxes (SAHI's NMS); greedy: merge matches into the best "
                        "box (SAHI's GREEDYNMM; with conf 0.001 near-zero boxes stretch good ones)")
    p.add_argument("--match-metric", choices=("ios", "iou"), default="iou", help="intersection over union / over the smaller box")
    p.add_argument("--match-thr", type=number(float, 0, 1), default=0.5, help="boxes match when metric >= this")
    p.add_argument("--conf", type=number(float, 0, 1), default=0.001, help="score threshold of the model")
    p.add_argument("--iou", type=number(float, 0, 1), default=0.7, help="YOLO: the model's own NMS IoU")
    p.add_argument("--imgsz", type=number(int, 1), default=None,
                   help="YOLO: inference size of the tiles (default: from --upscale)")
    p.add_argument("--upscale", type=number(float, 1), default=1.25,
                   help="YOLO: tiles are shown at most this many times larger than the model saw objects in training "
                        "(the training scale its checkpoint records: imgsz over the training images' size; a checkpoint "
                        "without it: this image at the training imgsz); the whole image itself runs at the training imgsz")
    p.add_argument("--batch", type=number(int, 1), default=DEFAULT_BATCH,
                   help="tiles of an image per forward pass (the boxes do not depend on it; a static export's own batch "
                        "caps it)")
    p.add_argument("--device", default=None, help="cpu, 0, cuda:0 ... (default: Ultralytics' / torch's choice)")
    p.add_argument("--eval", action="store_true", help="with --gt: print AP by size of the result")
    add_size_options(p)  # the --eval table's size ranges and detection limit


def run(args) -> int:
    if args.eval and not args.gt:
        raise SmallboxError("--eval needs --gt (the ground truth to score against)")
    _check_model(args.model)
    refuse_output_onto_inputs([args.out], [args.model, args.gt], "slice")
    check_device(args.device, "--device")
    apply_offline_defaults()
    from ..adapters.predict_fn import load_predict_fn
    from ..fusion.sliced import DEFAULT_TILE, SliceOptions, slice_images, slice_windows
    from ..predictions.speed import speed_line

    slice_windows(1, 1, args.tile or DEFAULT_TILE, args.overlap)  # bad --tile / --overlap fail before the model loads
    index = index_folder(args.images, ids_json=args.gt)
    predict_fn = load_predict_fn(args.model, args.conf, args.imgsz or args.tile or DEFAULT_TILE, args.device, args.iou)
    category_ids = default_category_ids(len(predict_fn.names), index.category_ids or predict_fn.category_ids)
    options = SliceOptions(args.tile, args.overlap, args.full, args.merge, args.match_metric, args.match_thr,
                           args.imgsz, args.upscale, args.batch)
    if predict_fn.fixed_size:
        print(f"note: {args.model} is an export of one input size: tiles and the whole image run at "
              f"{predict_fn.fixed_size} px (export with dynamic=True to let tiles run at their own size)")
    if args.imgsz is None and predict_fn.trained_imgsz and not predict_fn.train_scale:
        print(f"note: {args.model} does not record the size of its training images: tiles are scaled as if they had "
              "each sliced image's size (give --imgsz to choose the tiles' input size)")
    preds, whole_preds, seconds = slice_images([(im["id"], index.path(im)) for im in index.images], predict_fn, options,
                                               category_ids, eval_whole=args.eval)
    write_predictions(preds, args.out)
    if index.source == "folder":
        names = predict_fn.names
        write_images_json(Path(args.out).parent, index, [{"id": c, "name": names[i]} for i, c in enumerate(category_ids)],
                          args.out)
    print(f"{len(preds)} boxes on {len(index.images)} images -> {args.out} ({index.note()})")
    print(speed_line(len(index.images), seconds) + (" (includes the whole-image pass twice: --eval)" if args.eval else ""))
    if args.eval:
        from .ensemble import format_eval_rows

        rows = ([("whole image alone", whole_preds)] if whole_preds else []) + \
            [(f"tiles {options.tile_for(predict_fn)}px" + ("" if options.full == "never" else " + whole image"), preds)]
        gt = load_coco(args.gt, check_files=False)
        buckets, _ = size_buckets(args.areas, args.gt, gt.areas())
        print(format_eval_rows(rows, gt, buckets, max_dets_for(args)))
        tv = Path(args.model).suffix == ".pt" and checkpoint_kind(args.model) == "tv"
        if whole_preds and not tv:
            print(f"(whole image alone = `smallbox yolo predict` at the model's training size, conf={args.conf:g} "
                  f"iou={args.iou:g} and Ultralytics' max_det=300: the same boxes)")
    return 0


def _check_model(model: str) -> None:
    """YOLO weights, a model YAML or a tv checkpoint; a missing .pt is not downloaded."""
    path = Path(model)
    if path.is_dir() and path.name.endswith("_model"):  # an export folder (OpenVINO, ...): AutoBackend reads it
        return
    if path.suffix == ".pt" or path.is_dir():
        if checkpoint_kind(path) == "other":
            raise SmallboxError(f"{model}: neither a YOLO nor a `smallbox tv` checkpoint")
    elif path.suffix not in MODEL_SUFFIXES:
        raise SmallboxError(f"{model}: give YOLO weights (.pt), an exported YOLO model (.onnx, .torchscript, an "
                            "OpenVINO folder), a model YAML or a `smallbox tv` checkpoint")
    elif path.suffix in (".onnx", ".torchscript") and not path.is_file():
        raise SmallboxError(f"{model}: no such exported model file")
