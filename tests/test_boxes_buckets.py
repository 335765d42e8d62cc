import math

import numpy as np
import pytest

from smallbox.datasets import SizeBuckets
from smallbox.errors import SmallboxError
from smallbox.datasets import boxes as B


def test_conversions_round_trip_on_real_boxes(deeppcb_val):
    import json
    data = json.loads(deeppcb_val.read_text())
    xywh = np.array([a["bbox"] for a in data["annotations"]], dtype=float)
    xyxy = B.xywh_abs_to_xyxy_abs(xywh)
    assert np.allclose(xyxy[:, 2] - xyxy[:, 0], xywh[:, 2])
    assert np.allclose(B.xyxy_abs_to_xywh_abs(xyxy), xywh)
    norm = B.xywh_abs_to_cxcywh_norm(xywh, 640, 480)
    assert np.allclose(norm[:, 0], (xywh[:, 0] + xywh[:, 2] / 2) / 640)
    assert np.allclose(norm[:, 3], xywh[:, 3] / 480)
    assert np.allclose(B.cxcywh_norm_to_xywh_abs(norm, 640, 480), xywh)
    assert np.allclose(B.cxcywh_norm_to_xyxy_abs(B.xyxy_abs_to_cxcywh_norm(xyxy, 640, 480), 640, 480), xyxy)


def test_coco_buckets_match_coco_ranges():
    b = SizeBuckets.coco()
    assert b.ranges() == [("small", 0.0, 1024.0), ("medium", 1024.0, 9216.0), ("large", 9216.0, 1e10)]
    assert list(b.index([0.5, 1023.9, 1024, 9215, 9216, 1e6])) == [0, 0, 1, 1, 2, 2]


def test_fit_is_tertiles_rounded_to_whole_sides(deeppcb_val):
    from smallbox.datasets import load_coco
    areas = load_coco(deeppcb_val).areas()
    fitted = SizeBuckets.fit(areas)
    sides = [round(math.sqrt(q)) for q in np.quantile(areas, [1 / 3, 2 / 3])]
    assert fitted.thresholds == (sides[0] ** 2, sides[1] ** 2) and fitted.name == "fit"
    counts = np.bincount(fitted.index(areas), minlength=3) / len(areas)
    assert all(0.2 < c < 0.5 for c in counts)  # each bucket holds about a third


@pytest.mark.parametrize("spec, expected", [("coco", (1024, 9216)), ("32^2,96^2", (1024, 9216)), ("100, 2500", (100, 2500))])
def test_parse(spec, expected):
    assert SizeBuckets.parse(spec).thresholds == expected


@pytest.mark.parametrize("spec", ["96^2,32^2", "abc", "1,2,3", "0,5", "fit"])
def test_parse_rejects(spec):
    with pytest.raises(SmallboxError):
        SizeBuckets.parse(spec)


def test_dict_round_trip():
    b = SizeBuckets.parse("16^2,80^2")
    assert SizeBuckets.from_dict(b.to_dict()) == b
