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


@pytest.mark.parametrize("spec", ["96^2,32^2", "abc", "1,2,2", "0,5", "fit", "fit:1", "a=0:8^2,b=9^2:16^2",
                                  "a=0:8^2,a=8^2:16^2", "all=0:8^2,b=8^2:inf", "a=0:8^2"])
def test_parse_rejects(spec):
    with pytest.raises(SmallboxError):
        SizeBuckets.parse(spec)


def test_any_number_of_ranges_presets_and_names():
    five = SizeBuckets.parse("8^2,16^2,32^2,64^2")
    assert five.names == ("to8", "8to16", "16to32", "32to64", "from64") and len(five.ranges()) == 5
    assert five.index([10, 64, 100, 4095, 4096, 1e6]).tolist() == [0, 1, 1, 3, 4, 4]  # [lo, hi): 64 = 8² is tiny's
    aitod = SizeBuckets.parse("aitod")
    assert (aitod.names, aitod.thresholds, aitod.name) == (("verytiny", "tiny", "small", "medium"), (64.0, 256.0, 1024.0), "aitod")
    named = SizeBuckets.parse("vt=0:8^2,t=8^2:16^2,s=16^2:32^2,m=32^2:64^2")
    assert named.names == ("vt", "t", "s", "m") and named.upper == 64 ** 2
    assert named.index([10, 5000]).tolist() == [0, -1]  # above the last named range: in none
    assert named.index([63.5 ** 2, 64 ** 2]).tolist() == [3, -1]  # a range holds its lower edge, not its upper
    assert SizeBuckets.from_dict(named.to_dict()) == named and SizeBuckets.from_dict(aitod.to_dict()) == aitod
    areas = np.arange(1, 1001, dtype=float) ** 2
    fit5 = SizeBuckets.parse("fit:5", areas)
    counts = np.bincount(fit5.index(areas), minlength=5)
    assert len(fit5.names) == 5 and (abs(counts - 200) <= 2).all()  # a fifth of the boxes each


def test_dict_round_trip():
    b = SizeBuckets.parse("16^2,80^2")
    assert SizeBuckets.from_dict(b.to_dict()) == b
