# The report's baseline: YOLOv8s (CSP backbone) at 1024, recipes/baseline.yaml (docs/yolo.md).
.PHONY: yolo-baseline

yolo-baseline: setup need-data  ## baseline YOLOv8s at 1024 (DATA=, MODEL=, ARGS=)
	$(call yolo_train,baseline.yaml,baseline,$(MODEL),$(DATA))
