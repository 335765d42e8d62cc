# The techniques made for tiny objects (issue 24), each on the bundled DeepPCB data at CPU scale
# (YOLOv8n, 320 px, TINY_EPOCHS epochs from scratch; train 699 / select 101 / report 200 images):
#   make tiled-deeppcb   tiles of the native 640 px images, validated and scored sliced
#   make nwd-deeppcb     NWD in the assigner and the box loss
#   make p2-deeppcb      a stride-4 detection level
# Each ends with `smallbox eval` of its checkpoint on the 200 report images (never seen, never picked).
# For the answer with seeds and a calibrated test, run the matrix: make experiments.
TINY_DATA ?= build/deeppcb-tiles
TINY_RUNS ?= runs/tiny-objects
TINY_EPOCHS ?= 12
.PHONY: deeppcb-tiles tiled-deeppcb nwd-deeppcb p2-deeppcb

deeppcb-tiles: setup  ## convert DeepPCB train-699 (+ 320 px tiles) with select-101 as val -> build/deeppcb-tiles
	$(SMALLBOX) convert data/deeppcb/annotations/train-699.json --images data/deeppcb/images \
	  --val data/deeppcb/annotations/select-101.json --out $(TINY_DATA) --tiles 320,0

tiled-deeppcb: deeppcb-tiles  ## YOLOv8n trained on 320 px tiles (TINY_EPOCHS/4 epochs: the baseline's image passes), scored sliced
	$(SMALLBOX) yolo train model=yolov8n.yaml data=$(TINY_DATA)/data-tiles.yaml imgsz=320 epochs=$$(( ($(TINY_EPOCHS) + 3) / 4 )) \
	  warmup_epochs=0.75 close_mosaic=2 project=$(abspath $(TINY_RUNS)) name=tiled exist_ok=True $(ARGS)
	$(SMALLBOX) slice $(TINY_RUNS)/tiled/weights/best.pt --images data/deeppcb/images --gt data/deeppcb/annotations/val.json \
	  --out $(TINY_RUNS)/tiled/report.json --eval

nwd-deeppcb: deeppcb-tiles  ## YOLOv8n with NWD (recipes/nwd/yolov8n-nwd.yaml), scored on the report split
	$(call tiny_run,recipes/nwd/yolov8n-nwd.yaml,nwd)

p2-deeppcb: deeppcb-tiles  ## YOLOv8n with a P2 (stride 4) level (recipes/models/p2-yolov8n.yaml), scored on the report split
	$(call tiny_run,recipes/models/p2-yolov8n.yaml,p2)

# $(call tiny_run,MODEL,NAME): train on the whole images, predict the report images, eval
tiny_run = $(SMALLBOX) yolo train model=$(1) data=$(TINY_DATA)/data.yaml imgsz=320 epochs=$(TINY_EPOCHS) \
	  project=$(abspath $(TINY_RUNS)) name=$(2) exist_ok=True $(ARGS) && \
	SMALLBOX_IMAGE_IDS=data/deeppcb/annotations/val.json $(SMALLBOX) yolo predict model=$(TINY_RUNS)/$(2)/weights/best.pt \
	  source=data/deeppcb/images imgsz=320 conf=0.001 project=$(abspath $(TINY_RUNS)) name=$(2)-report exist_ok=True && \
	$(SMALLBOX) eval data/deeppcb/annotations/val.json $(TINY_RUNS)/$(2)-report/predictions.json
