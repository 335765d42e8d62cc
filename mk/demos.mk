# Quick runs on the bundled data, each a few minutes on CPU: what one stage looks like.
DEEPPCB_YOLO ?= build/deeppcb-yolo
ANALYSIS_GT ?= data/deeppcb/annotations/val.json
ANALYSIS_A ?= data/deeppcb/predictions/yolov8n_640_60_s0_val.json.gz
ANALYSIS_B ?= data/deeppcb/predictions/yolov8s_640_100_s2_val.json.gz
ANALYSIS_OUT ?= runs/analysis
REPORT ?= runs/report.md
REPORT_METRIC ?= coco/AP
.PHONY: eda-demo convert-deeppcb adapters-demo tv-smoke analysis-demo analysis-report tv-test

eda-demo: setup  ## EDA of the bundled DeepPCB val split -> runs/eda/deeppcb-val
	$(SMALLBOX) eda data/deeppcb/annotations/val.json --out runs/eda/deeppcb-val --images data/deeppcb/images --buckets fit

convert-deeppcb: setup  ## convert the bundled DeepPCB subset (with small and upto96 splits) -> build/deeppcb-yolo
	$(SMALLBOX) convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
	  --val data/deeppcb/annotations/val.json --out $(DEEPPCB_YOLO) --split small:0:32^2 --split upto96:0:96^2

adapters-demo: setup  ## one epoch of a tiny Swin-YOLO with the size-weighted loss (the plumbing, not accuracy)
	$(SMALLBOX) convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
	  --val data/deeppcb/annotations/val.json --out runs/adapters-demo/data
	$(SMALLBOX) yolo train model=recipes/models/swin-tiny-test-sw-yolo.yaml data=runs/adapters-demo/data/data.yaml \
	  imgsz=320 epochs=1 batch=8 device=cpu workers=0 plots=False project=$(abspath runs/adapters-demo) name=swin-tiny-sw exist_ok=True $(ARGS)

tv-smoke: setup  ## tiny Faster R-CNN on the bundled data, the whole torchvision flow
	$(SMALLBOX) tv train recipes/tv/smoke.yaml train.project=$(TV_RUNS) train.exist_ok=true

analysis-demo: setup  ## significance (AP_small) and compare of the two bundled YOLOv8 prediction files -> runs/analysis
	$(SMALLBOX) significance $(ANALYSIS_GT) $(ANALYSIS_A) -- $(ANALYSIS_B) --metric AP_small --json $(ANALYSIS_OUT)/significance_AP_small.json
	$(SMALLBOX) significance $(ANALYSIS_GT) $(ANALYSIS_A) -- $(ANALYSIS_B) --metric AP_small --areas fit --json $(ANALYSIS_OUT)/significance_AP_small_fit.json
	$(SMALLBOX) compare $(ANALYSIS_GT) $(ANALYSIS_A) $(ANALYSIS_B) --images data/deeppcb/images --out $(ANALYSIS_OUT)/compare --areas fit

analysis-report: setup  ## one table over RUNS="runs/a runs/b ..." -> REPORT (markdown, CSV, plots)
	@test -n "$(RUNS)" || { echo 'usage: make analysis-report RUNS="runs/a runs/b ..."'; exit 2; }
	$(SMALLBOX) report $(RUNS) --out $(REPORT) --csv $(REPORT:.md=.csv) --metric $(REPORT_METRIC)

tv-test: setup  ## the torchvision path's tests only
	$(PY) -m pytest -q tests/test_tv.py
