# Mutation check (docs/testing.md): plausible one-line bugs of tests/mutants.yaml, each put into a
# temporary copy of the repository; the tests named for it must fail. Not part of `make test`
# (each mutant reruns its test files: about half an hour for the list).
#   MUTANTS="name ..."  only these (default: all)
MUTANTS ?=
.PHONY: mutants

mutants: setup  ## mutation check: every mutant of tests/mutants.yaml must fail its tests (slow; docs/testing.md)
	$(PY) scripts/mutants.py $(if $(MUTANTS),--only $(MUTANTS))
