# Ultralytics YOLO experiments of the report (docs/yolo.md). Every target takes
#   DATA=  a data.yaml written by `smallbox convert` (required)
#   MODEL= a model YAML (random init) or a local .pt (default yolo11n.yaml: nothing is downloaded)
#   ARGS=  extra `key=value` Ultralytics arguments appended to every run (e.g. "epochs=3 device=0,1")
# and writes its runs under $(YOLO_RUNS)/<target>[-stage]/ (results.csv, smallbox.json,
# predictions.json, weights/); re-running a target overwrites its folders. The project path is made
# absolute: Ultralytics would put a relative one under its own runs_dir/detect/.
MODEL ?= yolo11n.yaml
YOLO_RUNS ?= runs/yolo
EPOCHS ?= 25
MOSAIC_EPOCHS ?= 20
DATA_SMALL ?= $(dir $(DATA))data-small.yaml
SMALLBOX_YOLO = $(PY) -m smallbox yolo
# $(call yolo_train,RECIPE,NAME,MODEL,DATA)
yolo_train = $(SMALLBOX_YOLO) train cfg=recipes/$(1) model=$(3) data=$(4) project=$(abspath $(YOLO_RUNS)) name=$(2) exist_ok=True $(ARGS)
YOLO_TARGETS = yolo-baseline exp2-res-up exp2-res-down exp2-mosaic-first exp2-mosaic-80-20 exp3-specialist

.PHONY: $(YOLO_TARGETS) yolo-need-data

yolo-need-data:
	@test -n "$(DATA)" || { echo "give DATA=path/to/data.yaml (written by smallbox convert)"; exit 2; }
	@test -f "$(DATA)" || { echo "DATA=$(DATA): no such file"; exit 2; }

# Baseline at 1024.
yolo-baseline: setup yolo-need-data
	$(call yolo_train,baseline.yaml,baseline,$(MODEL),$(DATA))

# Resolution up: train at 1024, then fine-tune that run's best.pt at 2048 (one target, two runs).
exp2-res-up: setup yolo-need-data
	$(call yolo_train,exp2-res-1024.yaml,exp2-res-up-1024,$(MODEL),$(DATA))
	$(call yolo_train,exp2-finetune-2048.yaml,exp2-res-up-2048,$(YOLO_RUNS)/exp2-res-up-1024/weights/best.pt,$(DATA))

# Resolution down: train at 2048, then fine-tune at 1024.
exp2-res-down: setup yolo-need-data
	$(call yolo_train,exp2-res-2048.yaml,exp2-res-down-2048,$(MODEL),$(DATA))
	$(call yolo_train,exp2-finetune-1024.yaml,exp2-res-down-1024,$(YOLO_RUNS)/exp2-res-down-2048/weights/best.pt,$(DATA))

# Mosaic only for the first MOSAIC_EPOCHS of EPOCHS (Ultralytics closes it for the last close_mosaic).
exp2-mosaic-first: setup yolo-need-data
	@test $(MOSAIC_EPOCHS) -le $(EPOCHS) || { echo "MOSAIC_EPOCHS=$(MOSAIC_EPOCHS) > EPOCHS=$(EPOCHS)"; exit 2; }
	$(call yolo_train,exp2-mosaic-first-n.yaml,exp2-mosaic-first-$(MOSAIC_EPOCHS),$(MODEL),$(DATA)) epochs=$(EPOCHS) close_mosaic=$(shell echo $$(( $(EPOCHS) - $(MOSAIC_EPOCHS) )))

# Mosaic on for 80% of EPOCHS, off for the last 20%.
exp2-mosaic-80-20: setup yolo-need-data
	$(call yolo_train,exp2-mosaic-80-20.yaml,exp2-mosaic-80-20,$(MODEL),$(DATA)) epochs=$(EPOCHS) close_mosaic=$(shell echo $$(( $(EPOCHS) / 5 )))

# Small-box specialist on the per-area split (smallbox convert ... --split small:0:32^2 writes data-small.yaml).
exp3-specialist: setup yolo-need-data
	@test -f "$(DATA_SMALL)" || { echo "DATA_SMALL=$(DATA_SMALL): no such file (smallbox convert ... --split small:0:32^2)"; exit 2; }
	$(call yolo_train,exp3-specialist.yaml,exp3-specialist,$(MODEL),$(DATA_SMALL))
	@# its predictions on the FULL val split, for ensembling with the full model (smallbox ensemble)
	$(SMALLBOX_YOLO) val cfg=recipes/exp3-specialist.yaml model=$(YOLO_RUNS)/exp3-specialist/weights/best.pt data=$(DATA) project=$(abspath $(YOLO_RUNS)) name=exp3-specialist-val-full exist_ok=True $(ARGS)
