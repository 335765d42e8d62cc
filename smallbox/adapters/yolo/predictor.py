"""``smallbox yolo predict``: Ultralytics' predictor, plus ``predictions.json`` (COCO results with
the original ids, by :mod:`smallbox.predictions.images`' rule) and ``predictions.csv`` (the
competition format) of every run on images."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import LOGGER, RANK

from ...callbacks.export import export_predictions
from ...datasets.imagefiles import list_images
from ...errors import SmallboxError
from ...datasets.manifest import manifest_of_data_file
from ...predictions.speed import speed_line
from ...predictions import default_category_ids, index_folder, to_coco_results, write_images_json


class SmallboxPredictor(DetectionPredictor):
    """``DetectionPredictor`` that also writes predictions.json / .csv of every image run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._records = []  # (path, xyxy_abs [N, 4], conf [N], cls [N]) per image
        self._times = []  # when each batch's results were ready (the speed line: model loading left out)

    def stream_inference(self, source=None, model=None, *args, **kwargs):
        self._records, self._times = [], []
        self._source = source if source is not None else self.args.source
        yield from super().stream_inference(source, model, *args, **kwargs)
        if RANK in {-1, 0} and _is_file_source(self._source):
            self._export()

    def construct_results(self, preds, img, orig_imgs):
        results = super().construct_results(preds, img, orig_imgs)
        for r in results:
            boxes = r.boxes
            self._records.append((r.path, boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy()))
        self._times.append((time.perf_counter(), len(results)))
        return results

    def _export(self):
        if not self._records:
            if self._source is not None and Path(str(self._source)).is_dir():
                from ...cli.yolo import unreadable_message

                _remove_if_empty(self.save_dir)
                files = list_images(Path(str(self._source)))
                raise SmallboxError(unreadable_message(files, self._source) + ": none was predicted")
            return
        if getattr(self.dataset, "mode", "image") != "image":
            LOGGER.warning("smallbox: predictions.json is written for image sources only (not video or streams)")
            return
        manifest = manifest_of_data_file(self.args.data)
        paths = [r[0] for r in self._records]
        folder_source = self._source is not None and Path(str(self._source)).is_dir()
        # a folder's ids come from its whole listing, never from the files that happened to decode
        index = index_folder(_source_folder(self._source, paths), files=None if folder_source else paths,
                             readable_only=False)
        skipped = _not_predicted(index, paths) if folder_source else []
        if skipped:
            from ...cli.yolo import SKIP_UNREADABLE_ENV, unreadable_message

            if os.environ.get(SKIP_UNREADABLE_ENV) != "1":
                _remove_if_empty(self.save_dir)
                raise SmallboxError(unreadable_message(skipped, self._source))
            LOGGER.warning(f"smallbox: skipped {len(skipped)} unreadable image(s) ({', '.join(p.name for p in skipped[:5])}); "
                           "every other image keeps its id")
            index.images = [im for im in index.images if im["id"] not in {index.id_of(p) for p in skipped}]
        known = manifest.category_ids if manifest else index.category_ids
        if known is None:  # an export or a moved checkpoint: the category ids it carries
            from .metadata import read_metadata

            classes = read_metadata(self.model).get("classes") or []
            known = [c["category_id"] for c in classes] if len(classes) == len(self.model.names) else None
        category_ids = default_category_ids(len(self.model.names), known)
        preds = []
        for path, xyxy, conf, cls in self._records:
            if index.knows(path):  # a folder file the ids json leaves out is not exported
                preds += to_coco_results(xyxy, conf, cls, index.id_of(path), category_ids)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = export_predictions(self.save_dir, preds, index.file_names(), category_ids)
        if index.source == "folder":
            names = self.model.names
            write_images_json(self.save_dir, index, [{"id": cid, "name": names[i]} for i, cid in enumerate(category_ids)])
        LOGGER.info(f"smallbox: wrote {json_path} and {csv_path.name} ({len(preds)} boxes on {len(index.images)} images; "
                    f"{index.note()}; conf>={self.args.conf}, iou={self.args.iou}, max_det={self.args.max_det}, "
                    f"imgsz={self.args.imgsz})")
        if len(self._times) > 1:
            # from the first batch's results to the last: every later batch's whole pipeline
            # (reading, letterbox, forward, NMS), without model loading and the first batch's warm-up
            seconds = self._times[-1][0] - self._times[0][0]
            n = sum(k for _, k in self._times[1:])
            LOGGER.info(speed_line(n, seconds, warm_up=self._times[0][1]))


def _not_predicted(index, paths) -> list[Path]:
    """The images of the index that produced no result (Ultralytics skips what it cannot decode)."""
    done = {os.path.abspath(p) for p in paths}
    return [Path(f) for f in index.files.values() if os.path.abspath(f) not in done]


def _remove_if_empty(folder) -> None:
    try:
        Path(folder).rmdir()
    except OSError:
        pass


def _is_file_source(source) -> bool:
    """Images named on disk (a folder, file, glob or list file): in-memory arrays and streams get no export."""
    return isinstance(source, (str, Path)) and not str(source).isdigit() and "://" not in str(source)


def _source_folder(source, paths) -> Path:
    """The folder file names are relative to: the source itself when it is a folder, else the
    folder holding the predicted files."""
    if source is not None and Path(str(source)).is_dir():
        return Path(str(source))
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]))
