# Benchmarks (bench/): each prints its time against the reference measured in the same run.
.PHONY: bench-convert bench-swin bench-significance tv-bench

bench-convert: setup  ## smallbox convert vs Ultralytics' convert_coco, 100k boxes
	$(PY) bench/bench_convert.py

bench-swin: setup  ## CSP YOLOv8s vs Swin-T-YOLO at 640: FLOPs, time, memory
	$(PY) bench/bench_swin.py

bench-significance: setup  ## 1,000 resamples of 5,000 images
	$(PY) bench/bench_significance.py

tv-bench: setup  ## images/s of a training step, Faster R-CNN R50-FPN vs Swin-T-FPN at 512 (CPU)
	$(PY) bench/bench_tv.py
