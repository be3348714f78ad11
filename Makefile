# `make demo` and `make test` work on a fresh machine: each creates .venv and installs first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install demo test lint lock clean

install: $(VENV)/.installed

# torch first, pinned: a CPU build here (on other machines, e.g. TORCH="torch==2.13.0
# --index-url https://download.pytorch.org/whl/cu126" for CUDA, or .../whl/cpu for the CPU).
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "Creating $(VENV) with $(PYTHON) (a first install takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	@echo "Installing $(TORCH) first (pinned; see TORCH above for CUDA or CPU-only builds)"
	$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check $(TORCH)
	@echo "Installing refusal-curation and its dependencies (sentence-transformers, faiss, dvc, argilla, datasets, ...)"
	$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@echo "Installed into $(VENV)"
	touch $@

demo: install
	@echo "Running the pipeline (dvc repro): pull, normalize, dedup, families, suggest, label, redact, split, release"
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

# constraints.txt pins every dependency's version for `make install`; this re-resolves
# them (the newest pyproject.toml allows) in a scratch venv and writes them there.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --quiet --disable-pip-version-check $(TORCH)
	$(LOCK_VENV)/bin/python -m pip install --quiet --quiet --disable-pip-version-check -e '.[dev]'
	{ grep '^#' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable \
	  | grep -v '^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf $(LOCK_VENV)

clean:
	rm -rf data reports .pytest_cache
