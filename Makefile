# `make demo` and `make test` work on a fresh machine: each creates .venv and installs first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install demo test lint clean

install: $(VENV)/.installed

# torch first, pinned: a CPU build here (on other machines, e.g. TORCH="torch==2.13.0
# --index-url https://download.pytorch.org/whl/cu126" for CUDA, or .../whl/cpu for the CPU).
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	dvc repro
	@echo
	@echo "Ledger:  reports/ledger.json (curate ledger prints it)"
	@version=$$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['release']['version'])"); \
	echo "Release: releases/$$version (dataset card: releases/$$version/README.md)"; \
	echo "Load it: python -c \"import datasets; print(datasets.load_dataset('releases/$$version', 'heldout-weapons'))\""

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

clean:
	rm -rf data reports .pytest_cache
