"""The five steps, as the notebooks and the CLI call them: each takes Settings and returns a summary."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from .config import Settings, load_settings

log = logging.getLogger(__name__)

NOTEBOOKS = ("01_produce", "02_bronze", "03_silver", "04_gold", "05_insights")


def settings_from_params(**params) -> Settings:
    """Settings for a notebook: conf/ + environment, with the notebook's non-empty parameters over them."""
    logging.basicConfig(level=os.environ.get("FITBIT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("kafka", "py4j", "mlflow", "alembic", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mapping = {"raw_dir": "paths.raw_dir", "lake_dir": "paths.lake_dir",
               "bootstrap_servers": "kafka.bootstrap_servers", "bronze_trigger": "bronze.trigger",
               "silver_trigger": "silver.trigger", "speed": "producer.speed"}
    return load_settings().with_overrides(**{mapping.get(k, k): v for k, v in params.items()})


def produce_step(settings: Settings, file_filter: str | None = None, limit: int | None = None,
                 speed: float | None = None) -> dict:
    from .kafka_broker import ensure_broker, ensure_topics
    from .produce import produce_from_settings

    ensure_broker(settings)
    ensure_topics(settings)
    summary = produce_from_settings(settings, file_filter=file_filter, limit=limit, speed=speed,
                                    progress=sys.stderr.isatty() or "JPY_PARENT_PID" in os.environ)
    print(summary)
    _write_report(settings, "produce", summary.as_dict())
    return summary.as_dict()


def bronze_step(settings: Settings, trigger: str | None = None) -> dict:
    from .bronze import run_bronze
    from .kafka_broker import ensure_broker
    from .spark import get_spark

    ensure_broker(settings)
    result = run_bronze(get_spark(settings), settings, trigger)
    _write_report(settings, "bronze", result)
    return result


def silver_step(settings: Settings, trigger: str | None = None) -> list[dict]:
    from .silver import run_silver
    from .spark import get_spark

    return run_silver(get_spark(settings), settings, trigger)


def gold_step(settings: Settings) -> dict:
    """Gold tables from silver, then the goal-alert stream over the new hourly steps."""
    from .alerts import GOAL_ALERTS, run_alerts
    from .gold import run_gold
    from .kafka_broker import ensure_broker
    from .spark import get_spark

    spark = get_spark(settings)
    result = run_gold(spark, settings)
    ensure_broker(settings)   # alerts are also published to the alerts topic
    result[GOAL_ALERTS] = run_alerts(spark, settings)
    _write_report(settings, "gold", result)
    return result


def insights_step(settings: Settings) -> dict:
    from .insights import run_insights
    from .spark import get_spark

    return run_insights(get_spark(settings), settings)


def _write_report(settings: Settings, step: str, payload) -> None:
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / f"{step}.json").write_text(json.dumps(payload, indent=2, default=str))


def run_notebooks(settings: Settings, notebooks_dir: Path | None = None, out_dir: Path | None = None) -> None:
    """`make run`: the five notebooks headless, in order, with a broker for the run."""
    from .kafka_broker import BrokerError, ensure_broker, stop_local_broker

    notebooks_dir = notebooks_dir or settings.project_root / "notebooks"
    out_dir = out_dir or notebooks_dir / "_executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        handle = ensure_broker(settings)
    except BrokerError as exc:
        raise SystemExit(str(exc)) from None
    from .catalogue import scan_sources

    scan = scan_sources(settings.raw_dir)
    if scan.files:
        print(f"Input: {len(scan.files)} Fitbit CSV files in {settings.raw_dir}", flush=True)
    else:
        print(f"No Fitbit CSV in {settings.raw_dir}: this run uses a synthetic data set in the Kaggle "
              f"schema (set FITBIT_RAW_DIR to use real data)", flush=True)
    timings = {}
    try:
        for name in NOTEBOOKS:
            started = time.monotonic()
            print(f"==> {name}", flush=True)
            cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                   "--ExecutePreprocessor.timeout=-1", "--output-dir", str(out_dir),
                   str(notebooks_dir / f"{name}.ipynb")]
            result = subprocess.run(cmd, cwd=notebooks_dir)
            if result.returncode != 0:
                raise SystemExit(f"{name} failed: see the executed notebook in {out_dir}/{name}.ipynb")
            timings[name] = round(time.monotonic() - started, 1)
    finally:
        if handle.started_here:
            stop_local_broker(settings)
    print("\nDone. " + ", ".join(f"{k} {v}s" for k, v in timings.items()))
    gold = settings.reports_dir / "gold.json"
    if gold.exists():
        print("  Gold rows: " + ", ".join(f"{k} {v}" for k, v in json.loads(gold.read_text()).items()))
    print(f"  Delta tables:       {settings.lake_dir}/bronze, silver, gold")
    print(f"  Reports and charts: {settings.reports_dir}")
    print(f"  Executed notebooks: {out_dir}")
    print(f"  MLflow:             {settings.mlflow_tracking_uri}")


def stream(settings: Settings) -> None:
    """`make stream`: bronze, silver and alerts as continuous queries (processingTime) until Ctrl-C."""
    from .alerts import start_alerts
    from .bronze import start_bronze
    from .kafka_broker import ensure_broker
    from .silver import start_silver
    from .spark import get_spark

    ensure_broker(settings)
    spark = get_spark(settings)
    queries = [start_bronze(spark, settings, "processingTime"), start_silver(spark, settings, "processingTime"),
               start_alerts(spark, settings, "processingTime")]
    print("Streaming bronze, silver and goal alerts; Ctrl-C stops.", flush=True)
    try:
        spark.streams.awaitAnyTermination()
    except KeyboardInterrupt:
        pass
    finally:
        for query in queries:
            query.stop()
