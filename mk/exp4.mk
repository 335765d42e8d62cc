# Experiment 4, size-weighted box loss (docs/adapters.md, docs/tv.md): YOLOv8s with one recipe of
# recipes/size_weighting/ per run (`make exp4-32-96-w3.0-1.5`, ...); exp1-csp is the same model
# without weighting.
EXP4_SETTINGS = 32-96-w3.0-1.5 16-80-w4.0-1.5 50-150-w3.0-1.5 32-96-mild1.2 32-96-mild1.5 32-96-mild2.0
.PHONY: exp4 tv-exp4

exp4: exp1-csp $(addprefix exp4-,$(EXP4_SETTINGS))  ## experiment 4 on YOLO: baseline + the report's three settings + a milder sweep (DATA=)
exp4-%: setup need-data  ## experiment 4: one setting, e.g. exp4-32-96-w3.0-1.5 (recipes/size_weighting/yolov8s-sw-*.yaml)
	@test -f recipes/size_weighting/yolov8s-sw-$*.yaml || { echo "no recipe recipes/size_weighting/yolov8s-sw-$*.yaml"; exit 2; }
	$(call yolo_train,baseline.yaml,exp4-$*,recipes/size_weighting/yolov8s-sw-$*.yaml,$(DATA))

tv-exp4: setup  ## experiment 4 on torchvision: size-weighted box loss, the report's three settings
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_32_96_x3_x1.5)
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_16_80_x4_x1.5,loss.size_weights.thresholds=[256$(tv_comma)6400] loss.size_weights.weights=[4.0$(tv_comma)1.5$(tv_comma)1.0])
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_50_150_x3_x1.5,loss.size_weights.thresholds=[2500$(tv_comma)22500] loss.size_weights.weights=[3.0$(tv_comma)1.5$(tv_comma)1.0])
