# Set-up is incremental: the venv is (re)built when pyproject.toml changes, data is fetched
# once and verified by sha256, trained models live in the content-addressed store.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PROFILE  ?= quick
WORKERS  ?= auto
PYTEST   := $(BIN)/python -m pytest

.PHONY: setup data datasets test experiments bench clean-reports

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

data: setup
	$(BIN)/python -m harness data fetch

test: data
	$(PYTEST) tests -n 2

experiments: data
	$(PYTEST) experiments -n $(WORKERS) --profile $(PROFILE)

bench: setup
	$(BIN)/python -m bench

clean-reports:
	find reports -mindepth 1 ! -name README.md -delete
