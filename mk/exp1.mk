# Experiment 1, backbone swap (docs/adapters.md, docs/tv.md): the CSP YOLOv8s and the same neck and
# head on Swin-T/S/B/B-22k (timm) or torchvision's swin_t; Faster R-CNN ResNet-50 vs Swin-T.
# Swin runs use random init unless weights/<timm name>.safetensors exists (or the file of that name
# in SMALLBOX_WEIGHTS_DIR): then it is passed as pretrained=. Nothing is downloaded.
SMALLBOX_WEIGHTS_DIR ?= weights
export SMALLBOX_WEIGHTS_DIR
# Transformer backbones want AdamW, a small learning rate and no 10x bias warm-up (Swin paper's detection runs).
SWIN_ARGS ?= optimizer=AdamW lr0=0.0001 weight_decay=0.05 warmup_bias_lr=0.0
EXP1_CFG ?= baseline.yaml
swin_weights = $(if $(wildcard $(SMALLBOX_WEIGHTS_DIR)/$(1).safetensors),pretrained=$(SMALLBOX_WEIGHTS_DIR)/$(1).safetensors)
# $(call exp1_swin,NAME,TIMM_NAME)
exp1_swin = $(call yolo_train,$(EXP1_CFG),exp1-$(1),recipes/models/$(1)-yolo.yaml,$(DATA),$(SWIN_ARGS) $(call swin_weights,$(2)))

EXP1_TARGETS = exp1-csp exp1-swin-t exp1-swin-s exp1-swin-b exp1-swin-b22k exp1-tv-swin-t
.PHONY: exp1 $(EXP1_TARGETS) tv-exp1

exp1: exp1-csp exp1-swin-t exp1-swin-s exp1-swin-b exp1-swin-b22k  ## experiment 1 on YOLO: CSP baseline + Swin-T/S/B/B-22k (DATA=)
exp1-csp: setup need-data  ## experiment 1: the CSP YOLOv8s (recipes/models/csp-yolov8s.yaml)
	$(call yolo_train,$(EXP1_CFG),exp1-csp,recipes/models/csp-yolov8s.yaml,$(DATA))
exp1-swin-t: setup need-data  ## experiment 1: Swin-T backbone (timm), same neck and head
	$(call exp1_swin,swin-t,swin_tiny_patch4_window7_224)
exp1-swin-s: setup need-data  ## experiment 1: Swin-S backbone
	$(call exp1_swin,swin-s,swin_small_patch4_window7_224)
exp1-swin-b: setup need-data  ## experiment 1: Swin-B backbone
	$(call exp1_swin,swin-b,swin_base_patch4_window7_224)
exp1-swin-b22k: setup need-data  ## experiment 1: Swin-B ImageNet-22k backbone
	$(call exp1_swin,swin-b22k,swin_base_patch4_window7_224.ms_in22k)
exp1-tv-swin-t: setup need-data  ## experiment 1: torchvision swin_t through Ultralytics' own TorchVision layer
	$(call yolo_train,$(EXP1_CFG),exp1-tv-swin-t,recipes/models/tv-swin-t-yolo.yaml,$(DATA),$(SWIN_ARGS))

tv-exp1: setup  ## experiment 1 on torchvision: Faster R-CNN ResNet-50-FPN vs Swin-T-FPN at 1024
	$(call tv_train,faster_rcnn_r50_1024,faster_rcnn_r50_1024)
	$(call tv_train,faster_rcnn_swin_t_1024,faster_rcnn_swin_t_1024)
