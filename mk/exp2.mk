# Experiment 2, resolution and mosaic schedules (docs/yolo.md): train at one size and fine-tune
# best.pt at another; mosaic for the first N epochs or 80% of them.
EPOCHS ?= 25
MOSAIC_EPOCHS ?= 20
.PHONY: exp2-res-up exp2-res-down exp2-mosaic-first exp2-mosaic-80-20 tv-exp2

exp2-res-up: setup need-data  ## experiment 2: train at 1024, fine-tune its best.pt at 2048
	$(call yolo_train,exp2-res-1024.yaml,exp2-res-up-1024,$(MODEL),$(DATA))
	$(call yolo_train,exp2-finetune-2048.yaml,exp2-res-up-2048,$(YOLO_RUNS)/exp2-res-up-1024/weights/best.pt,$(DATA))

exp2-res-down: setup need-data  ## experiment 2: train at 2048, fine-tune at 1024
	$(call yolo_train,exp2-res-2048.yaml,exp2-res-down-2048,$(MODEL),$(DATA))
	$(call yolo_train,exp2-finetune-1024.yaml,exp2-res-down-1024,$(YOLO_RUNS)/exp2-res-down-2048/weights/best.pt,$(DATA))

exp2-mosaic-first: setup need-data  ## experiment 2: mosaic for the first MOSAIC_EPOCHS of EPOCHS only
	@test $(MOSAIC_EPOCHS) -le $(EPOCHS) || { echo "MOSAIC_EPOCHS=$(MOSAIC_EPOCHS) > EPOCHS=$(EPOCHS)"; exit 2; }
	$(call yolo_train,exp2-mosaic-first-n.yaml,exp2-mosaic-first-$(MOSAIC_EPOCHS),$(MODEL),$(DATA),epochs=$(EPOCHS) close_mosaic=$(shell echo $$(( $(EPOCHS) - $(MOSAIC_EPOCHS) ))))

exp2-mosaic-80-20: setup need-data  ## experiment 2: mosaic on for 80% of EPOCHS, off for the last 20%
	$(call yolo_train,exp2-mosaic-80-20.yaml,exp2-mosaic-80-20,$(MODEL),$(DATA),epochs=$(EPOCHS) close_mosaic=$(shell echo $$(( $(EPOCHS) / 5 ))))

$(TV_RUNS)/faster_rcnn_r50_1024/best.pt:
	$(call tv_train,faster_rcnn_r50_1024,faster_rcnn_r50_1024)

tv-exp2: setup $(TV_RUNS)/faster_rcnn_r50_1024/best.pt  ## experiment 2 on torchvision: 1024, then fine-tune at 2048
	$(call tv_train,faster_rcnn_r50_2048_ft,faster_rcnn_r50_2048_ft,model.init_from=$(TV_RUNS)/faster_rcnn_r50_1024/best.pt)
