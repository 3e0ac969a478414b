# Fitbit wellness lakehouse. `make run` is the main job, `make test` the tests.
# Both install and start what they need: the venv, the Maven jars (Spark packages, Kafka broker).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make test: test modules spread over this many pytest workers (each its own Spark and broker); 0 = all in one process
TEST_WORKERS ?= 2
# conf/local.env (git-ignored) holds secrets and personal overrides
-include conf/local.env
export

.PHONY: help setup browser venv run job backfill dashboard lakeview test test-unit test-e2e test-cluster chaos cluster-up cluster-down spark-up spark-down stream vacuum alerts kafka-up kafka-down lab export bench clean clean-lake

help:
	@echo "make run         the five notebooks headless on FITBIT_RAW_DIR (synthetic data when empty)"
	@echo "make test        unit + end-to-end tests (real Kafka, Spark, Delta)"
	@echo "make lab         JupyterLab on notebooks/ (start a broker first: make kafka-up)"
	@echo "make job         the bundle's jobs run locally as Databricks runs them (JOB=fitbit_pipeline for one)"
	@echo "make backfill FROM=2016-04-12 TO=2016-04-20   rebuild gold for a date range, then insights"
	@echo "make chaos       kill -9 every writer after each of its first commits, restart, compare (long; table in docs/chaos.md)"
	@echo "make stream      bronze, silver and gold running continuously"
	@echo "make vacuum      delete the table files no version of the last 7 days uses (a long stream's lake stays small)"
	@echo "make clean-lake  delete the lake at FITBIT_LAKE_DIR and its broker's topics (the raw CSVs stay)"
	@echo "make dashboard   live web dashboard over gold (Streamlit), refreshing while make stream runs"
	@echo "make lakeview    rebuild the Databricks Lakeview dashboard JSON from sql/queries"
	@echo "make kafka-up    start the local Kafka broker / make kafka-down stops it"
	@echo "make spark-up    keep one Spark JVM up that runs and notebooks attach to (faster runs) / make spark-down"
	@echo "make cluster-up  a Spark standalone cluster (master + 2 workers) and a 3-node Kafka cluster / cluster-down"
	@echo "make alerts      print the goal alerts as they arrive on the alerts topic"
	@echo "make export      gold as Parquet and CSV extracts for BI tools (<lake>/reports/bi)"
	@echo "make setup       what make run and make test install first: venv, Java check, Maven jars"
	@echo "make test-unit / test-e2e / test-cluster   a part of the tests"
	@echo "make bench       benchmarks -> docs/benchmarks.md"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (the pinned packages need it): install it, or run make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Java check, Kafka broker jars and Spark's Maven packages (cached in .cache/ after the first time),
# and the browser of the browser tests (Debian's chromium, with apt-get when missing and allowed)
setup: $(STAMP) browser
	@$(PY) -m fitbit_lakehouse setup

browser:
	@bash tools/install_chromium.sh

run: setup
	$(PY) -m fitbit_lakehouse run

# bundle.yml's jobs, locally: tasks in depends_on order, job parameters as widgets (PARAMS="a=1 b=2")
JOB ?= all
job: setup
	$(PY) -m fitbit_lakehouse job $(JOB) $(foreach p,$(PARAMS),--param $(p))

backfill: setup
	@test -n "$(FROM)$(TO)" || { echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	$(PY) -m fitbit_lakehouse job fitbit_pipeline --only gold,insights --param start_date=$(FROM) --param end_date=$(TO)

# the live dashboard over gold (Streamlit, reads Delta with delta-rs): leave it open beside `make stream`
dashboard: venv
	@$(PY) -m fitbit_lakehouse dashboard

# rebuild the Databricks Lakeview dashboard (dashboards/fitbit_wellness.lvdash.json) from sql/queries
lakeview: venv
	$(PY) -m fitbit_lakehouse lakeview

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

test-unit: setup
	$(PY) -m pytest tests/unit

test-e2e: setup
	$(PY) -m pytest tests/e2e

# kill -9 after the k-th commit of every writer, for several k, then restart and compare (long)
chaos: setup
	CHAOS_REPORT=$(CURDIR)/docs/chaos.md $(PY) -m pytest -n $(TEST_WORKERS) --dist load -m 'chaos or e2e' \
		tests/e2e/test_faults.py tests/e2e/test_broker_loss.py

# the same pipeline on a Spark standalone cluster and a three-broker Kafka cluster, compared with local
test-cluster: setup
	$(PY) -m pytest -m cluster tests/e2e/test_cluster.py

cluster-up: setup
	@$(PY) -m fitbit_lakehouse cluster up

cluster-down: venv
	@$(PY) -m fitbit_lakehouse cluster down

stream: setup
	$(PY) -m fitbit_lakehouse stream

vacuum: venv
	@$(PY) -m fitbit_lakehouse vacuum

alerts: setup
	$(PY) -m fitbit_lakehouse alerts

kafka-up: setup
	$(PY) -m fitbit_lakehouse kafka up

kafka-down: $(STAMP)
	$(PY) -m fitbit_lakehouse kafka down

# one Spark JVM kept between runs: make run, make job and notebook kernels attach to it (no JVM start, no JIT warm-up)
spark-up: setup
	$(PY) -m fitbit_lakehouse spark up

spark-down: $(STAMP)
	$(PY) -m fitbit_lakehouse spark down

# JupyterLab on notebooks/, kernels on the venv's Python (where fitbit_lakehouse is installed)
lab: setup
	$(PY) -m fitbit_lakehouse lab

export: setup
	$(PY) -m fitbit_lakehouse export

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf notebooks/_executed .pytest_cache

# deletes the lake at FITBIT_LAKE_DIR (tables, checkpoints, ledger, the local broker's topic data,
# reports, MLflow's store, the user-key secret generated for it), after stopping the broker it started;
# the raw CSVs stay
clean-lake: $(STAMP)
	$(PY) -m fitbit_lakehouse clean-lake
