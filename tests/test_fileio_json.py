"""fileio.compact_json_bytes: orjson's speed, json.dumps' meaning, checked against json itself."""

from __future__ import annotations

import json

import pytest

from smallbox.fileio import compact_json_bytes


def test_a_real_coco_json_reads_back_equal_and_ascii(deeppcb_val):
    data = json.loads(deeppcb_val.read_text())
    data["images"][0]["note"] = [1e-05, 1e16, -0.0, 5e-324, 2**63 - 1, True, "a/b", {"x": []}]
    text = compact_json_bytes(data)
    assert text.isascii()
    assert json.loads(text) == data


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), -float("inf"), 2**64, -(2**63) - 1, "Müller 칩", None],
                         ids=["nan", "inf", "-inf", "int>64bit", "int<-64bit", "non-ascii", "null"])
def test_what_orjson_would_write_otherwise_is_written_as_json_dumps_writes_it(odd):
    """orjson writes NaN and infinities as null, UTF-8 instead of \\u escapes, and refuses
    integers beyond 64 bits: there json.dumps' bytes are written."""
    data = {"images": [{"id": 1, "file_name": "x.png", "extra": odd}], "ids": {"3": 4}}
    text = compact_json_bytes(data)
    assert text == json.dumps(data, separators=(",", ":")).encode("ascii")
    back = json.loads(text)["images"][0]["extra"]
    assert back == odd or (odd != odd and back != back)  # NaN reads back as NaN


def test_integer_keys_are_written_as_json_writes_them():
    assert compact_json_bytes({1: "a", "2": [3]}) == b'{"1":"a","2":[3]}'
