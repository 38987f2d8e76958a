# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test dev world clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/vila-assets demo --data-root ./data

test: $(VENV)/.installed
	$(BIN)/pytest -q

# Browse what the demo made (binds 127.0.0.1 only).
dev: $(VENV)/.installed
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/vila-assets instance-setup
	DAGSTER_HOME=$(DAGSTER_HOME) VILA_DATA_ROOT=$(CURDIR)/data $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf data .dagster_home
