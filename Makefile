# i24net: one command per job. Everything is installed by these targets into
# ./.venv and ~/.cache/i24net; nothing needs to be installed by hand beyond
# what the machine ships (python3, java 17+, maven; `make deps` installs the
# last two with apt-get when they are missing and you are root).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
I24NET := $(VENV)/bin/i24net
STAMP  := $(VENV)/.installed

.PHONY: help deps venv broker-jars test test-unit lint demo demo-secure bench soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

deps:  ## java, maven, prometheus/promtool, chromium + driver (apt-get, only what is missing)
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt-get:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)  ## the local virtualenv with i24net and its dev tools

broker-jars: deps venv  ## fetch the Kafka broker jars from Maven Central (cached)
	$(I24NET) dev broker fetch

test: broker-jars  ## every test: unit, and integration against a real Kafka broker
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

test-unit: deps venv  ## the fast unit layer only (promtool from deps: the alert rule tests need it)
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

lint: venv  ## ruff, ruff format, mypy --strict
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

demo: broker-jars  ## start a broker and show messages going through i24net (DEMO_ARGS=--keep: leave it running with the review desk open)
	$(I24NET) demo $(DEMO_ARGS)

demo-secure: broker-jars  ## the same demo with TLS, per-station SCRAM credentials and ACLs
	$(I24NET) demo --secure

bench: broker-jars  ## benchmarks (~6-8 min); table on the terminal, JSON in bench/results/, docs/benchmarks.md; BENCH_ARGS="--quick" or "--profile"
	$(PY) -m bench $(BENCH_ARGS)

soak: broker-jars  ## 10-minute reliability soak (not in CI)
	$(PY) -m bench.soak

clean:  ## remove local state (venv, var/, results); the jar cache stays
	rm -rf $(VENV) var bench/results .pytest_cache .mypy_cache .ruff_cache
