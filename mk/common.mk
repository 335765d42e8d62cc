# Shared by the experiment fragments: where runs go, how a YOLO run is started, the DATA= guard.
#   DATA=   a data.yaml written by `smallbox convert` (required by the YOLO experiment targets)
#   MODEL=  a model YAML (random init) or a local .pt (default: the CSP YOLOv8s of the report's baseline)
#   ARGS=   extra `key=value` Ultralytics arguments appended to every run (e.g. "epochs=3 device=0,1")
# Runs go under $(YOLO_RUNS)/<target>[-stage]/ (results.csv, smallbox.json, predictions.json, weights/);
# re-running a target overwrites its folders.
MODEL ?= recipes/models/csp-yolov8s.yaml
YOLO_RUNS ?= runs/yolo
SMALLBOX = $(PY) -m smallbox
# $(call yolo_train,RECIPE,NAME,MODEL,DATA[,EXTRA]): one `smallbox yolo train` run of a recipe under recipes/
yolo_train = $(SMALLBOX) yolo train cfg=recipes/$(1) model=$(3) data=$(4) project=$(abspath $(YOLO_RUNS)) name=$(2) exist_ok=True $(5) $(ARGS)

.PHONY: need-data help

need-data:
	@test -n "$(DATA)" || { echo "give DATA=path/to/data.yaml (written by smallbox convert; e.g. make convert-deeppcb, then DATA=build/deeppcb-yolo/data.yaml)"; exit 2; }
	@test -f "$(DATA)" || { echo "DATA=$(DATA): no such file (write it with smallbox convert ... --out DIR)"; exit 2; }

help:  ## this list: every target with one line
	@grep -hE '^[a-zA-Z0-9_%.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)$$/\1\t\2/' | sort -u | \
	  awk -F'\t' '{ printf "  %-22s %s\n", $$1, $$2 }'

# The torchvision path (smallbox tv). Data defaults to the bundled DeepPCB subset; point them at yours:
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
# $(call tv_train,RECIPE,NAME[,extra settings]) (write commas inside settings as $(tv_comma))
tv_train = $(TV_SMALLBOX) tv train recipes/tv/$(1).yaml $(TV_DATA) train.name=$(2) $(3) $(TV_ARGS)
