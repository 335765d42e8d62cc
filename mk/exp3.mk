# Experiment 3, small-box specialist + ensemble (docs/ensemble.md).
DATA_SMALL ?= $(dir $(DATA))data-small.yaml
.PHONY: exp3-specialist tv-exp3

exp3-specialist: setup need-data  ## experiment 3: a YOLO specialist on data-small.yaml, predicting the full val split
	@test -f "$(DATA_SMALL)" || { echo "DATA_SMALL=$(DATA_SMALL): no such file (smallbox convert ... --split small:0:32^2)"; exit 2; }
	$(call yolo_train,exp3-specialist.yaml,exp3-specialist,$(MODEL),$(DATA_SMALL))
	@# its predictions on the FULL val split, for ensembling with the full model (smallbox ensemble)
	$(SMALLBOX) yolo val cfg=recipes/exp3-specialist.yaml model=$(YOLO_RUNS)/exp3-specialist/weights/best.pt data=$(DATA) project=$(abspath $(YOLO_RUNS)) name=exp3-specialist-val-full exist_ok=True $(ARGS)

tv-exp3: setup  ## experiment 3 on torchvision: RetinaNet EfficientNet-B3-FPN specialists on boxes < 32² and < 96²
	$(call tv_train,retinanet_effb3_small,retinanet_effb3_small)
	$(call tv_train,retinanet_effb3_medium,retinanet_effb3_medium)

# The whole experiment in one target:
# Experiment 3 end to end (docs/ensemble.md): per-area split -> a small-box specialist and a full
# model (YOLO path) -> both predict the whole val split -> ensembles with and without size
# gating (NMS and WBF) -> one table: AP by size of each member and each ensemble.
#   make exp3 DATA_JSON=train.json IMAGES=img/ [VAL_JSON=val.json] [EXP3_SMALL=small:0:32^2]
# Defaults run in a few minutes on CPU on the bundled DeepPCB data (tiny random-init model, 3
# epochs at 160 px): they show the pipeline, not a result. For real runs set EXP3_MODEL (a model
# YAML or local .pt), EXP3_EPOCHS, EXP3_IMGSZ and EXP3_ARGS (e.g. "device=0 batch=16").
DATA_JSON ?= data/deeppcb/annotations/train.json
IMAGES ?= data/deeppcb/images
VAL_JSON ?= data/deeppcb/annotations/val.json
EXP3_SMALL ?= small:0:32^2
EXP3_OUT ?= runs/exp3
EXP3_MODEL ?= recipes/models/yolo-tiny.yaml
EXP3_EPOCHS ?= 3
EXP3_IMGSZ ?= 160
EXP3_ARGS ?= batch=8 workers=0 seed=0 deterministic=True plots=False
EXP3_DATA = $(EXP3_OUT)/data
EXP3_GT = $(EXP3_DATA)/annotations/val.json
EXP3_RUNS = $(abspath $(EXP3_OUT)/runs)
EXP3_YOLO = $(PY) -m smallbox yolo
EXP3_SPLIT_NAME = $(firstword $(subst :, ,$(EXP3_SMALL)))
# $(call exp3_train,NAME,DATA_YAML) and $(call exp3_val,NAME): a run and its predictions on the full val split.
exp3_train = $(EXP3_YOLO) train model=$(EXP3_MODEL) data=$(2) epochs=$(EXP3_EPOCHS) imgsz=$(EXP3_IMGSZ) project=$(EXP3_RUNS) name=$(1) exist_ok=True $(EXP3_ARGS)
exp3_val = $(EXP3_YOLO) val model=$(EXP3_RUNS)/$(1)/weights/best.pt data=$(EXP3_DATA)/data.yaml imgsz=$(EXP3_IMGSZ) project=$(EXP3_RUNS) name=$(1)-val exist_ok=True batch=8 workers=0 plots=False
EXP3_PREDS = $(EXP3_RUNS)/specialist-val/predictions.json $(EXP3_RUNS)/full-val/predictions.json
EXP3_ENSEMBLE = $(PY) -m smallbox ensemble $(EXP3_PREDS) --names specialist full --gt $(EXP3_GT)
EXP3_GATE = --specialist-range $(EXP3_SPLIT_NAME):$(word 2,$(subst :, ,$(EXP3_SMALL))):$(word 3,$(subst :, ,$(EXP3_SMALL)))

.PHONY: exp3

exp3: setup  ## experiment 3 end to end: split, specialist + full model, NMS/WBF with and without gating, one table
	$(PY) -m smallbox convert $(DATA_JSON) --images $(IMAGES) $(if $(VAL_JSON),--val $(VAL_JSON)) --out $(EXP3_DATA) --split $(EXP3_SMALL)
	$(call exp3_train,specialist,$(EXP3_DATA)/data-$(EXP3_SPLIT_NAME).yaml)
	$(call exp3_train,full,$(EXP3_DATA)/data.yaml)
	$(call exp3_val,specialist)
	$(call exp3_val,full)
	$(EXP3_ENSEMBLE) --method nms --out $(EXP3_OUT)/nms.json
	$(EXP3_ENSEMBLE) --method nms $(EXP3_GATE) --out $(EXP3_OUT)/nms-gated.json
	$(EXP3_ENSEMBLE) --method wbf --out $(EXP3_OUT)/wbf.json
	@# the last fusion prints the table: both members, the three fusions above, and itself
	$(EXP3_ENSEMBLE) --method wbf $(EXP3_GATE) --out $(EXP3_OUT)/wbf-gated.json \
	  --eval --eval-with $(EXP3_OUT)/nms.json $(EXP3_OUT)/nms-gated.json $(EXP3_OUT)/wbf.json
