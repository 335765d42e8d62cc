# smallbox: `make demo` runs the main job offline on the bundled data; `make test` is what CI runs.
# VENV= an environment to use: made here when missing (.venv by default); an existing one (a venv,
# a conda env: anything with bin/python) is reused as it is: smallbox is pip-installed into it
# (editable), its torch kept. The marker says the install matches pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is not pinned in pyproject.toml; this pin is what installs offline on our machines (only
# where the environment has no torch yet).
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.smallbox-installed
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: setup test demo bench clean

setup: $(STAMP)  ## install into .venv (made if missing) or VENV=an existing env: torch if absent, pip install -e '.[test]'

$(STAMP): pyproject.toml
	test -x $(PY) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip; }
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	@# ultralytics needs opencv-python, albumentations opencv-python-headless: both ship `cv2`
	@# into one folder. Keep exactly one: the headless build (no libGL needed on servers).
	v=$$($(PY) -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))") && \
	  $(PY) -m pip uninstall -q -y opencv-python opencv-python-headless && \
	  $(PY) -m pip install -q --no-deps opencv-python-headless==$$v
	$(PY) -c "import cv2, ultralytics, albumentations, smallbox; print('cv2', cv2.__version__, '| ultralytics', ultralytics.__version__)"
	touch $(STAMP)

test: setup  ## the test suite (what CI runs)
	$(PY) -m pytest -q tests

demo: setup  ## the main job offline on the bundled data with a real model, about 2 minutes on CPU
	bash scripts/demo.sh

bench: setup  ## every benchmark (bench/bench_*.py); fails when a parity check or target is missed
	$(PY) bench/run_all.py

clean:  ## remove runs/demo and build/
	rm -rf runs/demo build

# common.mk first (shared variables, the DATA= guard, `make help`), then one fragment per
# experiment of the report (baseline, exp1 ... exp4), quick demos and benchmarks.
include mk/common.mk
include $(filter-out mk/common.mk,$(sort $(wildcard mk/*.mk)))
