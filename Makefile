# `make demo` and `make test` work on a fresh machine: each creates .venv and installs first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	dvc repro
	@echo
	@echo "Deduplicated table: data/deduped.parquet (report: reports/dedup.json)"
	@echo "Ledger:             reports/ledger.json (curate ledger prints it)"

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

clean:
	rm -rf data reports .pytest_cache
