# Fitbit wellness lakehouse. `make run` is the main job, `make test` the tests.
# Both install and start what they need: the venv, the Maven jars (Spark packages, Kafka broker).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# conf/local.env (git-ignored) holds secrets and personal overrides
-include conf/local.env
export

.PHONY: help setup venv run test test-unit test-e2e stream alerts kafka-up kafka-down lab export bench clean clean-lake

help:
	@echo "make run         the five notebooks headless on FITBIT_RAW_DIR (synthetic data when empty)"
	@echo "make test        unit + end-to-end tests (real Kafka, Spark, Delta)"
	@echo "make lab         JupyterLab on notebooks/ (start a broker first: make kafka-up)"
	@echo "make stream      bronze + silver running continuously"
	@echo "make kafka-up    start the local Kafka broker / make kafka-down stops it"
	@echo "make bench       benchmarks -> docs/benchmarks.md"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed: install it, or run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Java check, Kafka broker jars and Spark's Maven packages (cached in .cache/ after the first time)
setup: $(STAMP)
	@$(PY) -m fitbit_lakehouse setup

run: setup
	$(PY) -m fitbit_lakehouse run

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit

test-e2e: setup
	$(PY) -m pytest tests/e2e

stream: setup
	$(PY) -m fitbit_lakehouse stream

alerts: setup
	$(PY) -m fitbit_lakehouse alerts

kafka-up: setup
	$(PY) -m fitbit_lakehouse kafka up

kafka-down: $(STAMP)
	$(PY) -m fitbit_lakehouse kafka down

lab: setup
	cd notebooks && ../$(VENV)/bin/jupyter lab

export: setup
	$(PY) -m fitbit_lakehouse export

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf notebooks/_executed .pytest_cache

# deletes the lake (tables, checkpoints, the local broker's topic data)
clean-lake: kafka-down
	rm -rf data/bronze data/silver data/gold data/checkpoints data/kafka data/reports data/_synthetic data/mlflow.db data/mlflow-artifacts data/_warehouse data/_derby data/mlruns
