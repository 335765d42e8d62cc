# COCO -> YOLO conversion of the bundled DeepPCB subset (docs/convert.md), and its benchmark.
DEEPPCB_YOLO ?= build/deeppcb-yolo

.PHONY: convert-deeppcb bench-convert

convert-deeppcb: setup
	$(PY) -m smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
	  --val data/deeppcb/annotations/val.json --out $(DEEPPCB_YOLO) --split small:0:32^2 --split upto96:0:96^2

bench-convert: setup
	$(PY) bench/bench_convert.py
