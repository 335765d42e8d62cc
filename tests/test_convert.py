"""`smallbox convert` on the bundled DeepPCB data, checked against Ultralytics' own converter and
against independent reads of the source json (never against smallbox's earlier output)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from smallbox.cli import main
from smallbox.datasets.manifest import load_manifest
from smallbox.datasets.split import split_by_image

ROOT = Path(__file__).resolve().parents[1]


def convert(*argv) -> int:
    return main(["convert", *map(str, argv)])


def read_label_rows(path: Path) -> np.ndarray:
    """``[N, 5]`` rows ``class cx cy w h`` of a YOLO label file."""
    text = path.read_text(encoding="utf-8")
    return np.array([[float(v) for v in line.split()] for line in text.splitlines()], dtype=np.float64).reshape(-1, 5)


def rows_to_xywh_abs(rows: np.ndarray, width: float, height: float) -> np.ndarray:
    """Written out here rather than taken from smallbox.datasets.boxes: an independent inverse."""
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)


def sort_boxes(categories, boxes) -> np.ndarray:
    table = np.column_stack([np.asarray(categories, dtype=np.float64), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)])
    return table[np.lexsort(table.T[::-1])] if len(table) else table


def tree_digest(root: Path) -> str:
    """Hash of every path under ``root``: file bytes, link targets, folders."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            h.update(f"L {rel} -> {os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"F {rel} ".encode() + hashlib.sha256(p.read_bytes()).digest())
        else:
            h.update(f"D {rel}\n".encode())
    return h.hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_labels_match_ultralytics_convert_coco(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images):
    from ultralytics.data.converter import convert_coco

    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    for src in (deeppcb_train, deeppcb_val):
        shutil.copy(src, ann_dir / src.name)
    convert_coco(str(ann_dir), str(tmp_path / "ul"), cls91to80=False)  # category ids 1..6 -> class 0..5
    assert convert(deeppcb_train, "--images", deeppcb_images, "--val", deeppcb_val, "--out", tmp_path / "sb") == 0

    compared = 0
    for split, src in (("train", deeppcb_train), ("val", deeppcb_val)):
        for image in json.loads(src.read_text())["images"]:
            stem = Path(image["file_name"]).stem
            ours = tmp_path / "sb" / "labels" / split / f"{stem}.txt"
            theirs = tmp_path / "ul" / "labels" / split / f"{stem}.txt"
            assert np.array_equal(read_label_rows(ours), read_label_rows(theirs)), stem
            assert ours.read_bytes() == theirs.read_bytes(), stem
            compared += len(read_label_rows(ours))
    assert compared == 565 + 1361


def test_labels_of_non_square_images_match_ultralytics(tmp_path, odd_deeppcb):
    """The odd DeepPCB (640x480 and 480x640 images in sub-folders, category ids 3..99): the same
    label bytes as Ultralytics' convert_coco, given the categories renumbered 1..K in ascending
    id order (its class is ``category_id - 1``; ours the position of the id)."""
    from ultralytics.data.converter import convert_coco

    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    sources = {"train": odd_deeppcb["train"], "val": odd_deeppcb["val"]}
    for split, src in sources.items():
        data = json.loads(src.read_text())
        rank = {cid: k for k, cid in enumerate(sorted(c["id"] for c in data["categories"]), start=1)}
        assert sorted({im["width"] != im["height"] for im in data["images"]}) == [True]  # none square
        for a in data["annotations"]:
            a["category_id"] = rank[a["category_id"]]
        (ann_dir / f"{split}.json").write_text(json.dumps(data))
    convert_coco(str(ann_dir), str(tmp_path / "ul"), cls91to80=False)
    assert convert(sources["train"], "--images", odd_deeppcb["images"], "--val", sources["val"], "--out", tmp_path / "sb") == 0

    compared = 0
    for split, src in sources.items():
        for image in json.loads(src.read_text())["images"]:
            ours = tmp_path / "sb" / "labels" / split / f"{Path(image['file_name']).stem}.txt"
            theirs = (tmp_path / "ul" / "labels" / split / image["file_name"]).with_suffix(".txt")
            assert ours.read_bytes() == theirs.read_bytes(), image["file_name"]
            compared += len(read_label_rows(ours))
    assert compared == sum(len(json.loads(src.read_text())["annotations"]) for src in sources.values())


@pytest.fixture
def tricky_coco(tmp_path, deeppcb_train, deeppcb_images):
    """24 DeepPCB train images under new, scattered ids and category ids (class order differs from
    id order), colliding base names across folders and in case only, unicode and spaces in names,
    and two crowd boxes."""
    src = json.loads(deeppcb_train.read_text())
    category_ids = {1: 40, 2: 7, 3: 19, 4: 3, 5: 100, 6: 55}
    root = tmp_path / "source images"
    images, annotations = [], []
    by_image = defaultdict(list)
    for a in src["annotations"]:
        by_image[a["image_id"]].append(a)
    for k, im in enumerate(src["images"][:24]):
        folder = f"part ü {k % 6}" if k < 12 else "a b"
        # six of each colliding name: whatever the split, some of them share a part
        name = "pcb.png" if k < 6 else ("Board.png", "board.PNG")[k % 2] if k < 12 else f"čip ü {k}.png"
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.symlink(deeppcb_images / im["file_name"], root / folder / name)
        image_id = 1000 + 7 * k
        images.append(dict(im, id=image_id, file_name=f"{folder}/{name}"))
        for a in by_image[im["id"]]:
            annotations.append(dict(a, id=5000 + 3 * len(annotations), image_id=image_id, category_id=category_ids[a["category_id"]]))
    annotations[0]["iscrowd"] = annotations[10]["iscrowd"] = 1
    categories = [dict(c, id=category_ids[c["id"]]) for c in src["categories"]]
    path = tmp_path / "tricky.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}, ensure_ascii=False), encoding="utf-8")
    return path, root, {"images": images, "annotations": annotations, "categories": categories}


def test_every_file_maps_back_to_its_image_and_boxes(tmp_path, tricky_coco):
    path, root, src = tricky_coco
    out = tmp_path / "out"
    assert convert(path, "--images", root, "--out", out, "--val-fraction", "0.25", "--seed", "3", "--split", "small:0:1024") == 0

    m = load_manifest(out / "data.yaml")
    assert m.root == out.absolute()
    assert m.category_ids == sorted(c["id"] for c in src["categories"])
    names = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))["names"]
    assert {names[i]: cid for i, cid in enumerate(m.category_ids)} == {c["name"]: c["id"] for c in src["categories"]}
    assert set(m.splits) == {"train", "val", "train-small", "val-small"}
    train_ids, val_ids = set(m.splits["train"].values()), set(m.splits["val"].values())
    assert not train_ids & val_ids and train_ids | val_ids == {im["id"] for im in src["images"]}
    assert set(m.splits["train-small"].values()) == train_ids and set(m.splits["val-small"].values()) == val_ids
    images = {im["id"]: im for im in src["images"]}
    for split, files in m.splits.items():  # base name kept unless its stem repeats in the split (case-blind)
        bases = {i: images[i]["file_name"].split("/")[-1] for i in files.values()}
        stems = [b.rsplit(".", 1)[0].casefold() for b in bases.values()]
        expected = {(b if stems.count(b.rsplit(".", 1)[0].casefold()) == 1 else f"{i}_{b}"): i for i, b in bases.items()}
        assert files == expected, split

    anns = defaultdict(list)
    for a in src["annotations"]:
        anns[a["image_id"]].append(a)
    for split, files in m.splits.items():
        in_range = (lambda a: a["bbox"][2] * a["bbox"][3] < 1024) if split.endswith("-small") else (lambda a: True)
        gt = json.loads(m.coco[split].read_text(encoding="utf-8"))
        assert [im["id"] for im in gt["images"]] == [im["id"] for im in src["images"] if im["id"] in set(files.values())]
        assert gt["annotations"] == [a for a in src["annotations"] if a["image_id"] in set(files.values()) and in_range(a)]
        assert len(files) == len(gt["images"]) and len(set(map(str.casefold, m.image_ids_by_stem(split)))) == len(files)
        for name, image_id in files.items():
            image = images[image_id]
            link = out / "images" / split / name
            assert os.path.samefile(link, root / image["file_name"])
            rows = read_label_rows(out / "labels" / split / f"{Path(name).stem}.txt")
            expected = [a for a in anns[image_id] if not a.get("iscrowd") and in_range(a)]
            got = sort_boxes([m.category_ids[int(c)] for c in rows[:, 0]], rows_to_xywh_abs(rows, image["width"], image["height"]))
            want = sort_boxes([a["category_id"] for a in expected], [a["bbox"] for a in expected])
            assert got.shape == want.shape and np.allclose(got, want, atol=0.01, rtol=0), (split, name)


def test_file_names_unique_per_split_by_stem_ignoring_case():
    from smallbox.datasets.convert import yolo_file_names

    images = [{"id": 1, "file_name": "a/Board.png"}, {"id": 2, "file_name": "b/board.PNG"}, {"id": 3, "file_name": "c/x y ü.png"},
              {"id": 4, "file_name": "d/2_board.jpg"}, {"id": 5, "file_name": "e/pcb.png"}, {"id": 6, "file_name": "e/pcb.jpg"}]
    assert yolo_file_names(images) == {1: "1_Board.png", 2: "2_2_board.PNG", 3: "x y ü.png", 4: "2_board.jpg",
                                       5: "5_pcb.png", 6: "6_pcb.jpg"}


def rare_class_coco(deeppcb_train) -> dict:
    """DeepPCB train with `pin-hole` (6) left in 2 images, A and B, and `copper` (5) in A only:
    both images then fall under a one-image stratum (A under copper, B under pin-hole), so only
    the last pass of the split can bring pin-hole into both parts."""
    data = json.loads(deeppcb_train.read_text())
    holders = defaultdict(set)
    for a in data["annotations"]:
        holders[a["category_id"]].add(a["image_id"])
    a_id = min(holders[5] & holders[6])
    b_id = min(holders[6] - {a_id})
    keep = {5: {a_id}, 6: {a_id, b_id}}
    annotations = [a for a in data["annotations"] if a["image_id"] in keep.get(a["category_id"], {a["image_id"]})]
    return dict(data, annotations=annotations)


def classes_of(data: dict, ids) -> set:
    ids = set(ids)
    return {a["category_id"] for a in data["annotations"] if a["image_id"] in ids}


def test_split_keeps_every_class_in_both_parts(deeppcb_train):
    data = rare_class_coco(deeppcb_train)
    all_ids = [im["id"] for im in data["images"]]
    shared = classes_of(data, all_ids) - {5}  # copper sits in one image: it can only be in one part
    naive_missed = 0
    for seed in range(6):
        train, val = split_by_image(data, 0.2, seed)
        assert sorted(train + val) == sorted(all_ids) and not set(train) & set(val)
        assert 12 <= len(val) <= 20
        assert shared <= classes_of(data, train) and shared <= classes_of(data, val), seed
        assert (5 in classes_of(data, train)) != (5 in classes_of(data, val))
        assert split_by_image(data, 0.2, seed) == (train, val)
        naive_val = set(np.random.default_rng(seed).permutation(all_ids)[: len(val)].tolist())
        naive_missed += not shared <= classes_of(data, naive_val)
    assert naive_missed > 0  # the data is hard enough that a plain random split loses a class
    assert split_by_image(data, 0.2, 0) != split_by_image(data, 0.2, 1)


def test_area_splits_hold_exactly_the_boxes_in_range(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images):
    src = {"train": json.loads(deeppcb_train.read_text()), "val": json.loads(deeppcb_val.read_text())}
    ranges = {"small": (0, 1024), "rest": (1024, float("inf"))}  # DeepPCB has 9 boxes of exactly 32x32
    for drop_empty in (False, True):
        out = tmp_path / f"out{int(drop_empty)}"
        flags = ["--drop-empty"] if drop_empty else []
        assert convert(deeppcb_train, "--images", deeppcb_images, "--val", deeppcb_val, "--out", out,
                       "--split", "small:0:32^2", "--split", "rest:1024:inf", *flags) == 0
        m = load_manifest(out / "data.yaml")
        for name, (lo, hi) in ranges.items():
            data_yaml = yaml.safe_load((out / f"data-{name}.yaml").read_text())
            assert (data_yaml["train"], data_yaml["val"]) == (f"images/train-{name}", f"images/val-{name}")
            for part in ("train", "val"):
                split = f"{part}-{name}"
                kept = [a for a in src[part]["annotations"] if lo <= a["bbox"][2] * a["bbox"][3] < hi]
                with_boxes = {a["image_id"] for a in kept}
                image_ids = [im["id"] for im in src[part]["images"] if not drop_empty or im["id"] in with_boxes]
                gt = json.loads((out / "annotations" / f"{split}.json").read_text())
                assert [im["id"] for im in gt["images"]] == image_ids
                assert [a["id"] for a in gt["annotations"]] == [a["id"] for a in kept]
                counts = defaultdict(int)
                for a in kept:
                    counts[a["image_id"]] += 1
                assert sorted(m.splits[split].values()) == sorted(image_ids)
                for file_name, image_id in m.splits[split].items():
                    rows = read_label_rows(out / "labels" / split / f"{Path(file_name).stem}.txt")
                    assert len(rows) == counts[image_id], (split, file_name)


def test_rerun_is_byte_identical(tmp_path, deeppcb_train, deeppcb_images):
    out = tmp_path / "out"
    args = [deeppcb_train, "--images", deeppcb_images, "--out", out, "--split", "small:0:1024", "--seed", "5"]
    assert convert(*args) == 0
    first = tree_digest(out)
    # a second process with another hash seed: set iteration order may not leak into the output
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-m", "smallbox", "convert", *map(str, args)], check=True, env=env, capture_output=True)
    assert tree_digest(out) == first
    assert leftovers(tmp_path) == []


def test_copy_writes_the_image_bytes(tmp_path, deeppcb_val, deeppcb_images):
    out = tmp_path / "out"
    assert convert(deeppcb_val, "--images", deeppcb_images, "--out", out, "--copy") == 0
    m = load_manifest(out / "data.yaml")
    files = {im["id"]: im["file_name"] for im in json.loads(deeppcb_val.read_text())["images"]}
    for split, names in m.splits.items():
        for name, image_id in names.items():
            p = out / "images" / split / name
            assert not p.is_symlink() and p.read_bytes() == (deeppcb_images / files[image_id]).read_bytes()


def test_copies_where_the_filesystem_refuses_links(tmp_path, deeppcb_val, deeppcb_images, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(os, "symlink", refuse)
    assert convert(deeppcb_val, "--images", deeppcb_images, "--out", tmp_path / "out") == 0
    assert "images: 200 copied;" in capsys.readouterr().out
    copies = list((tmp_path / "out" / "images").rglob("*.png"))
    assert len(copies) == 200 and not any(p.is_symlink() for p in copies)


def test_hardlinks_are_the_source_files(tmp_path, deeppcb_val, deeppcb_images):
    out = tmp_path / "out"
    assert convert(deeppcb_val, "--images", deeppcb_images, "--out", out) == 0  # hard links by default
    m = load_manifest(out / "data.yaml")
    files = {im["id"]: im["file_name"] for im in json.loads(deeppcb_val.read_text())["images"]}
    same_filesystem = os.stat(tmp_path).st_dev == os.stat(deeppcb_images).st_dev
    for name, image_id in m.splits["val"].items():
        p = out / "images" / "val" / name
        assert os.path.samefile(p, deeppcb_images / files[image_id])
        assert p.is_symlink() != same_filesystem  # a symlink only where hard links cannot be made


def test_bad_input_leaves_no_output(tmp_path, deeppcb_train, deeppcb_images, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text(deeppcb_train.read_text()[:5000])
    assert convert(broken, "--images", deeppcb_images, "--out", tmp_path / "out") == 2
    assert "broken.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []

    data = json.loads(deeppcb_train.read_text())
    data["annotations"][7]["bbox"][2] = -3
    bad_box = tmp_path / "bad_box.json"
    bad_box.write_text(json.dumps(data))
    assert convert(bad_box, "--images", deeppcb_images, "--out", tmp_path / "out") == 2
    assert f"annotation {data['annotations'][7]['id']}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failed_rerun_keeps_the_earlier_output(tmp_path, deeppcb_train, deeppcb_images, monkeypatch):
    out = tmp_path / "out"
    assert convert(deeppcb_train, "--images", deeppcb_images, "--out", out) == 0
    before = tree_digest(out)
    import smallbox.datasets.convert as convert_module

    calls = []
    real = convert_module.label_boxes

    def interrupted(*a, **k):  # Ctrl-C while the second split is being written
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(convert_module, "label_boxes", interrupted)
    assert convert(deeppcb_train, "--images", deeppcb_images, "--out", out, "--seed", "9", "--overwrite") == 130
    assert tree_digest(out) == before and leftovers(tmp_path) == []
    shutil.rmtree(out)
    calls.clear()
    assert convert(deeppcb_train, "--images", deeppcb_images, "--out", out) == 130
    assert not out.exists() and leftovers(tmp_path) == []


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, deeppcb_val, deeppcb_images, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert convert(deeppcb_val, "--images", deeppcb_images, "--out", out) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_clip_option(tmp_path, deeppcb_train, deeppcb_images, capsys):
    data = json.loads(deeppcb_train.read_text())
    data["images"] = data["images"][:3]
    keep = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    a = data["annotations"][0]
    width = next(im["width"] for im in data["images"] if im["id"] == a["image_id"])
    a["bbox"] = [width - 10, a["bbox"][1], 30, a["bbox"][3]]
    path = tmp_path / "oob.json"
    path.write_text(json.dumps(data))
    assert convert(path, "--images", deeppcb_images, "--out", tmp_path / "out") == 2
    assert f"annotation {a['id']}" in capsys.readouterr().err
    assert convert(path, "--images", deeppcb_images, "--out", tmp_path / "out", "--clip") == 0
    assert "clipped 1 box" in capsys.readouterr().out
    gt = {}
    for split in ("train", "val"):
        gt.update({x["id"]: x for x in json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())["annotations"]})
    assert gt[a["id"]]["bbox"] == [width - 10, a["bbox"][1], 10, a["bbox"][3]]
    m = load_manifest(tmp_path / "out" / "data.yaml")
    rows = np.concatenate([read_label_rows(tmp_path / "out" / "labels" / s / f"{Path(n).stem}.txt") for s in m.splits for n in m.splits[s]])
    assert (rows[:, 1] + rows[:, 3] / 2 <= 1 + 1e-6).all()


def test_ultralytics_reads_the_dataset(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images):
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "out"
    assert convert(deeppcb_train, "--images", deeppcb_images, "--val", deeppcb_val, "--out", out, "--split", "small:0:1024") == 0
    m = load_manifest(out / "data.yaml")
    val = json.loads(deeppcb_val.read_text())
    for yaml_name, split, n_boxes in (("data.yaml", "val", 1361), ("data-small.yaml", "val-small", 427)):
        data = check_det_dataset(str(out / yaml_name))
        assert data["nc"] == 6 and data["smallbox"]["manifest"] == "manifest.json"
        dataset = YOLODataset(img_path=data["val"], data=data, imgsz=160, augment=False, task="detect")
        assert len(dataset.labels) == len(val["images"])
        assert sum(len(lb["cls"]) for lb in dataset.labels) == n_boxes
        stems = m.image_ids_by_stem(split)
        assert sorted(stems[Path(lb["im_file"]).stem] for lb in dataset.labels) == sorted(im["id"] for im in val["images"])


def tertiles(areas) -> list[float]:
    """Area tertiles rounded to a whole side, squared: what `fit` promises (docs/eda.md)."""
    sides = np.sqrt(np.quantile(np.asarray(areas, dtype=np.float64), [1 / 3, 2 / 3]))
    return [float(max(1, round(s)) ** 2) for s in sides]


def test_fit_buckets_recorded_at_convert_serve_eval_and_eda(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images,
                                                            deeppcb_predictions, capsys):
    """One definition: the thresholds fitted on the train boxes at convert are the dataset's `fit`
    buckets for every later command that knows the dataset; a bare json is fitted on itself."""
    out = tmp_path / "ds"
    assert convert(deeppcb_train, "--images", deeppcb_images, "--val", deeppcb_val, "--out", out) == 0
    on_train = tertiles([a["bbox"][2] * a["bbox"][3] for a in json.loads(deeppcb_train.read_text())["annotations"]])
    on_val = tertiles([a["bbox"][2] * a["bbox"][3] for a in json.loads(deeppcb_val.read_text())["annotations"]])
    assert on_train != on_val  # 32²/37² against 32²/38²: the two used to be mixed up
    capsys.readouterr()
    for gt, expected, source in ((out / "annotations" / "val.json", on_train, f"recorded by smallbox convert in {out / 'data.yaml'}"),
                                 (deeppcb_val, on_val, f"fitted on the boxes of {deeppcb_val}")):
        assert main(["eval", str(gt), str(deeppcb_predictions[0]), "--areas", "fit", "--json", str(tmp_path / "m.json")]) == 0
        assert source in capsys.readouterr().out
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["buckets"]["fit"]["thresholds"] == expected and source in metrics["fit_source"]
    assert main(["eda", str(out / "annotations" / "val.json"), "--out", str(tmp_path / "eda"), "--buckets", "fit"]) == 0
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert summary["buckets"]["fit"]["thresholds"] == on_train and summary["suggested_thresholds"]["thresholds"] == on_train
    assert summary["fit_source"].startswith(f"recorded by smallbox convert in {out / 'data.yaml'}")


def test_a_full_disk_while_writing_labels_stops_the_run_and_leaves_nothing(tmp_path, deeppcb_train, deeppcb_images, capsys, monkeypatch):
    import errno

    import smallbox.datasets.convert as convert_module

    real, calls = convert_module.label_text, []

    def full_disk_half_way(rows):
        calls.append(1)
        if len(calls) == 40:
            raise OSError(errno.ENOSPC, "No space left on device", "labels/train/x.txt")
        return real(rows)

    monkeypatch.setattr(convert_module, "label_text", full_disk_half_way)
    out = tmp_path / "out"
    assert convert(deeppcb_train, "--images", deeppcb_images, "--out", out) == 2
    assert "labels/train/x.txt: No space left on device" in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path) == []


def test_the_image_count_printed_is_the_number_of_image_files(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images, capsys):
    """A size split's folder links the same files again: the summary says how many image files
    there are and how many times they were placed, each counted here from the folders."""
    out = tmp_path / "out"
    assert convert(deeppcb_train, "--images", deeppcb_images, "--val", deeppcb_val, "--out", out,
                   "--split", "small:0:32^2") == 0
    placed = [p for p in (out / "images").rglob("*") if p.is_file()]
    sources = {os.path.realpath(p) if p.is_symlink() else (os.stat(p).st_dev, os.stat(p).st_ino) for p in placed}
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("images:"))
    assert line.startswith(f"images: {len(sources)} files, placed {len(placed)} times in the split folders (")
    assert len(sources) == 280 and len(placed) == 560
