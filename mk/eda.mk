# `make eda-demo`: the EDA worked example of docs/eda.md on the bundled DeepPCB val split.
.PHONY: eda-demo
eda-demo: setup
	$(PY) -m smallbox eda data/deeppcb/annotations/val.json --out runs/eda/deeppcb-val --images data/deeppcb/images --buckets fit
