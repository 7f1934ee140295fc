# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   run the whole pipeline against a simulated Linq
#   make test   the test suite, ruff and mypy
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "linqwatch needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/linqwatch demo

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check daemon tests
	$(BIN)/ruff format --check daemon tests

typecheck: $(STAMP)
	$(BIN)/mypy daemon

clean:
	rm -rf $(VENV) build *.egg-info daemon/*.egg-info .pytest_cache .mypy_cache .ruff_cache
