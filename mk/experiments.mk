# Experiment matrices (docs/experiments.md): arms x seeds into experiments/ledger/, then the results page.
#   MATRIX=  the matrix file (default: the CPU matrix this machine can run to an answer)
#   BUDGET=  minutes: start no run that would end past it (default: none)
MATRIX ?= experiments/deeppcb-cpu-quick.yaml
BUDGET ?=
.PHONY: experiments results

experiments: setup  ## run the pending arm x seed pairs of MATRIX= (default the CPU quick matrix, ~17 min a run) into experiments/ledger
	$(SMALLBOX) experiments run $(MATRIX) $(if $(BUDGET),--budget $(BUDGET)) $(if $(DEVICE),--device $(DEVICE))

results: setup  ## docs/results.md from every ledger under experiments/ledger (mean ± std, calibrated tests, plots)
	$(SMALLBOX) report --ledger experiments/ledger --out docs/results.md
