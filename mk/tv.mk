# torchvision parity path (smallbox tv): the report's experiments as make targets.
# Data defaults to the bundled DeepPCB subset; point them at your own COCO json:
#   make tv-exp1 TV_TRAIN=trash/train.json TV_VAL=trash/val.json TV_IMAGES=trash/ TV_NPROC=4
TV_TRAIN ?= data/deeppcb/annotations/train.json
TV_VAL ?= data/deeppcb/annotations/val.json
TV_IMAGES ?= data/deeppcb/images
TV_NPROC ?= 1
TV_ARGS ?=
TV_RUNS ?= runs/tv
TV_SMALLBOX = $(if $(filter 1,$(TV_NPROC)),$(PY) -m smallbox,$(VENV)/bin/torchrun --nproc_per_node $(TV_NPROC) -m smallbox)
TV_DATA = data.train=$(TV_TRAIN) data.val=$(TV_VAL) data.images=$(TV_IMAGES) train.project=$(TV_RUNS) train.exist_ok=true
tv_comma := ,
# tv_train RECIPE NAME [extra settings] (write commas inside settings as $(tv_comma))
tv_train = $(TV_SMALLBOX) tv train recipes/tv/$(1).yaml $(TV_DATA) train.name=$(2) $(3) $(TV_ARGS)

.PHONY: tv-smoke tv-exp1 tv-exp2 tv-exp3 tv-exp4 tv-test tv-bench

tv-smoke: setup  ## a few minutes on CPU: tiny Faster R-CNN on the bundled data, whole flow
	$(PY) -m smallbox tv train recipes/tv/smoke.yaml train.project=$(TV_RUNS) train.exist_ok=true

tv-exp1: setup  ## experiment 1: Faster R-CNN ResNet-50-FPN vs Swin-T-FPN at 1024
	$(call tv_train,faster_rcnn_r50_1024,faster_rcnn_r50_1024)
	$(call tv_train,faster_rcnn_swin_t_1024,faster_rcnn_swin_t_1024)

$(TV_RUNS)/faster_rcnn_r50_1024/best.pt:
	$(call tv_train,faster_rcnn_r50_1024,faster_rcnn_r50_1024)

tv-exp2: setup $(TV_RUNS)/faster_rcnn_r50_1024/best.pt  ## experiment 2: 1024, then fine-tune at 2048
	$(call tv_train,faster_rcnn_r50_2048_ft,faster_rcnn_r50_2048_ft,model.init_from=$(TV_RUNS)/faster_rcnn_r50_1024/best.pt)

tv-exp3: setup  ## experiment 3: RetinaNet EfficientNet-B3-FPN specialists on boxes < 32² and < 96²
	$(call tv_train,retinanet_effb3_small,retinanet_effb3_small)
	$(call tv_train,retinanet_effb3_medium,retinanet_effb3_medium)

tv-exp4: setup  ## experiment 4: size-weighted box loss, the report's three settings
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_32_96_x3_x1.5)
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_16_80_x4_x1.5,loss.size_weights.thresholds=[256$(tv_comma)6400] loss.size_weights.weights=[4.0$(tv_comma)1.5$(tv_comma)1.0])
	$(call tv_train,faster_rcnn_r50_sizeweighted,sw_50_150_x3_x1.5,loss.size_weights.thresholds=[2500$(tv_comma)22500] loss.size_weights.weights=[3.0$(tv_comma)1.5$(tv_comma)1.0])

tv-test: setup
	$(PY) -m pytest -q tests/test_tv.py

tv-bench: setup  ## images/s of a training step, Faster R-CNN R50-FPN vs Swin-T-FPN at 512 (CPU)
	$(PY) bench/bench_tv.py
