# Experiments 1 (backbone swap) and 4 (size-weighted box loss) of the report (docs/adapters.md).
# Every training target takes
#   DATA=   a data.yaml written by `smallbox convert` (required)
#   ARGS=   extra `key=value` Ultralytics arguments for every run (e.g. "epochs=3 device=0,1")
# and trains with the baseline's settings (ADAPTERS_CFG, imgsz 1024) into $(ADAPTERS_RUNS)/<target>/.
# Swin recipes read their pretrained weights from local files named weights/<timm name>.safetensors
# (current folder, or by file name in SMALLBOX_WEIGHTS_DIR): nothing is downloaded.
ADAPTERS_RUNS ?= runs/yolo
ADAPTERS_CFG ?= recipes/baseline.yaml
SMALLBOX_WEIGHTS_DIR ?= weights
export SMALLBOX_WEIGHTS_DIR
# Transformer backbones want AdamW and a small learning rate (as in the Swin paper's detection runs).
SWIN_ARGS ?= optimizer=AdamW lr0=0.0001 weight_decay=0.05
# $(call adapters_train,MODEL_YAML,NAME,EXTRA_ARGS)
adapters_train = $(PY) -m smallbox yolo train cfg=$(ADAPTERS_CFG) model=$(1) data=$(DATA) project=$(abspath $(ADAPTERS_RUNS)) name=$(2) exist_ok=True $(3) $(ARGS)

EXP1_TARGETS = exp1-csp exp1-swin-t exp1-swin-s exp1-swin-b exp1-swin-b22k exp1-tv-swin-t
EXP4_SETTINGS = 32-96-w3.0-1.5 16-80-w4.0-1.5 50-150-w3.0-1.5 32-96-mild1.2 32-96-mild1.5 32-96-mild2.0

.PHONY: $(EXP1_TARGETS) exp1 exp4 adapters-need-data adapters-demo bench-swin

adapters-need-data:
	@test -n "$(DATA)" || { echo "give DATA=path/to/data.yaml (written by smallbox convert)"; exit 2; }
	@test -f "$(DATA)" || { echo "DATA=$(DATA): no such file"; exit 2; }

# Experiment 1: the CSP baseline (YOLOv8s) and the same neck/head on Swin-T/S/B (timm) and swin_t (torchvision).
exp1-csp: setup adapters-need-data
	$(call adapters_train,recipes/models/csp-yolov8s.yaml,exp1-csp)
exp1-swin-t: setup adapters-need-data
	$(call adapters_train,recipes/models/swin-t-yolo.yaml,exp1-swin-t,$(SWIN_ARGS))
exp1-swin-s: setup adapters-need-data
	$(call adapters_train,recipes/models/swin-s-yolo.yaml,exp1-swin-s,$(SWIN_ARGS))
exp1-swin-b: setup adapters-need-data
	$(call adapters_train,recipes/models/swin-b-yolo.yaml,exp1-swin-b,$(SWIN_ARGS))
exp1-swin-b22k: setup adapters-need-data
	$(call adapters_train,recipes/models/swin-b22k-yolo.yaml,exp1-swin-b22k,$(SWIN_ARGS))
exp1-tv-swin-t: setup adapters-need-data
	$(call adapters_train,recipes/models/tv-swin-t-yolo.yaml,exp1-tv-swin-t,$(SWIN_ARGS))
exp1: exp1-csp exp1-swin-t exp1-swin-s exp1-swin-b exp1-swin-b22k

# Experiment 4: YOLOv8s with a size-weighted box loss, one run per recipe in recipes/size_weighting/
# (`make exp4-32-96-w3.0-1.5`, ...); exp1-csp is the same model without weighting.
exp4-%: setup adapters-need-data
	@test -f recipes/size_weighting/yolov8s-sw-$*.yaml || { echo "no recipe recipes/size_weighting/yolov8s-sw-$*.yaml"; exit 2; }
	$(call adapters_train,recipes/size_weighting/yolov8s-sw-$*.yaml,exp4-$*)
exp4: exp1-csp $(addprefix exp4-,$(EXP4_SETTINGS))

# Smoke run on the bundled DeepPCB subset, CPU, a few minutes: tiny random-init Swin + size-weighted
# loss, 1 epoch at 320 px. Shows the plumbing (input geometry log, AP by size per epoch), not accuracy.
adapters-demo: setup
	$(PY) -m smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
	  --val data/deeppcb/annotations/val.json --out runs/adapters-demo/data
	$(PY) -m smallbox yolo train model=recipes/models/swin-tiny-test-sw-yolo.yaml data=runs/adapters-demo/data/data.yaml \
	  imgsz=320 epochs=1 batch=8 device=cpu workers=0 plots=False project=$(abspath runs/adapters-demo) name=swin-tiny-sw exist_ok=True $(ARGS)

bench-swin: setup
	$(PY) bench/bench_swin.py
