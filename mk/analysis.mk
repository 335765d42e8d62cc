# Experiment analysis (docs/analysis.md) on the bundled DeepPCB predictions (yolov8n vs yolov8s).
#   make analysis-demo            significance (AP_small, AP50) and compare -> runs/analysis/
#   make analysis-report RUNS="runs/a runs/b ..." [REPORT=runs/report.md] [REPORT_METRIC=coco/AP]
#   make bench-significance       1,000 resamples of 5,000 images, timed
ANALYSIS_GT ?= data/deeppcb/annotations/val.json
ANALYSIS_A ?= data/deeppcb/predictions/yolov8n_640_60_s0_val.json.gz
ANALYSIS_B ?= data/deeppcb/predictions/yolov8s_640_100_s2_val.json.gz
ANALYSIS_OUT ?= runs/analysis
REPORT ?= runs/report.md
REPORT_METRIC ?= coco/AP

.PHONY: analysis-demo analysis-report bench-significance
analysis-demo: setup
	$(PY) -m smallbox significance $(ANALYSIS_GT) $(ANALYSIS_A) -- $(ANALYSIS_B) --metric AP_small --json $(ANALYSIS_OUT)/significance_AP_small.json
	$(PY) -m smallbox significance $(ANALYSIS_GT) $(ANALYSIS_A) -- $(ANALYSIS_B) --metric AP_small --areas fit --json $(ANALYSIS_OUT)/significance_AP_small_fit.json
	$(PY) -m smallbox compare $(ANALYSIS_GT) $(ANALYSIS_A) $(ANALYSIS_B) --images data/deeppcb/images --out $(ANALYSIS_OUT)/compare --areas fit

analysis-report: setup
	@test -n "$(RUNS)" || { echo 'usage: make analysis-report RUNS="runs/a runs/b ..."'; exit 2; }
	$(PY) -m smallbox report $(RUNS) --out $(REPORT) --csv $(REPORT:.md=.csv) --metric $(REPORT_METRIC)

bench-significance: setup
	$(PY) bench/bench_significance.py
