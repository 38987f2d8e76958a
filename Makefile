# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
PROFILE ?= production

.PHONY: demo test test-fast dev world clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/vila-assets demo --data-root ./data

test: $(VENV)/.installed
	$(BIN)/pytest -q

# Local iteration: everything but the tests marked slow (end-to-end runs, the demo, S3).
test-fast: $(VENV)/.installed
	$(BIN)/pytest -q -m "not slow"

# Browse what the demo made (binds 127.0.0.1 only). `make dev PROFILE=sample_world` while
# `vila-assets world` serves the sample world lets the UI launch runs against it.
dev: $(VENV)/.installed
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/vila-assets instance-setup
	DAGSTER_HOME=$(DAGSTER_HOME) VILA_PROFILE=$(PROFILE) VILA_DATA_ROOT=$(CURDIR)/data $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf data .dagster_home
