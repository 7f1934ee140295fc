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

test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check daemon tests
	$(BIN)/ruff format --check daemon tests
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy daemon

# The status page's browser test drives Debian's chromium and chromium-driver:
# installed here when missing and we may (root with apt-get, as in CI). Where
# they cannot be, this says so and that one test skips, saying why.
.PHONY: browser
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver for the browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; } \
	  || echo "could not install chromium; the browser test will skip"; \
	else echo "no chromium and cannot install it here (needs root and apt-get); the browser test will skip"; fi

# systemd-analyze verify and security (exposure at most 1.5) on the unit; CI runs it.
.PHONY: check-unit
check-unit: $(STAMP)
	scripts/check-systemd-unit

# Measured (issue 8), none of them part of `make test`; everything on loopback.
#   make bench   benchmarks beside Alertmanager; writes bench/RESULTS.md (REPEATS=3)
#   make chaos   the full chaos run against a real daemon process; prints its figures
#   make fuzz    the long property-test run (FUZZ_EXAMPLES per test); prints how many ran
REPEATS       ?= 3
FUZZ_EXAMPLES ?= 20000
.PHONY: bench bench-tools chaos fuzz

# Alertmanager (the peer) and wrk (the ingest load) come from Debian's packages,
# py-spy (profiles: `make bench BENCH_ARGS="--profile bench/out/profiles"`) from
# PyPI. Installed when missing and we may (root with apt-get); otherwise
# `bench` says which part it skips.
bench-tools: $(STAMP)
	@missing=""; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing for the benchmarks"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; } \
	    || echo "could not install$$missing; bench skips what needs it"; \
	  else echo "missing$$missing and cannot install (needs root and apt-get); bench skips what needs it"; fi; \
	fi
	@test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy \
	  || echo "could not install py-spy; --profile will not work"

bench: bench-tools
	$(BIN)/python -m bench.run --repeats $(REPEATS) $(BENCH_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

fuzz: $(STAMP)
	LINQWATCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s -p no:cacheprovider \
	  tests/test_fuzz.py

clean:
	rm -rf $(VENV) build *.egg-info daemon/*.egg-info .pytest_cache .mypy_cache .ruff_cache
