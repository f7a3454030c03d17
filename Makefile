# neurocomp developer entry points.  `make demo` and `make test` each build
# .venv/ (Python 3.10, pinned working set) on first use and are no-ops after.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml .ci/setup-venv.sh
	@bash .ci/setup-venv.sh $(VENV)
	@touch $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/neurocomp demo

test: $(STAMP)
	@$(VENV)/bin/python -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
