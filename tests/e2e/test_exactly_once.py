"""Exactly-once silver: kill -9 the process running the stream mid-batch, restart, compare with a clean run.

Lake A runs produce -> bronze -> silver cleanly. Lake B gets a copy of A's bronze table and runs silver
in a separate process with the same micro-batches, which is killed with SIGKILL while a batch is in
flight, then restarted. B's silver tables and counts must equal A's row for row, lineage included.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.synthetic import generate

pytestmark = pytest.mark.e2e

FILES = "dailyActivity,sleepDay,hourlySteps"
FILES_PER_BATCH = 1   # bronze files per silver micro-batch, in both runs: the same batches


@pytest.fixture(scope="module")
def clean_run(base_settings, broker, test_root, spark):
    raw = test_root / "eo_raw"
    generate(raw, users=3, days=4, seed=5, heart_rate_users=1, dirty_rows=True)
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / "eo_clean"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_exactly_once",
        "producer.records_per_message": 50, "bronze.max_offsets_per_trigger": 10,
        "silver.max_files_per_trigger": FILES_PER_BATCH})
    pipeline.produce_step(settings, file_filter=FILES)
    pipeline.bronze_step(settings)     # several small bronze files: several silver micro-batches
    pipeline.silver_step(settings)
    return settings


def _silver_process(settings, lake_dir):
    env = dict(os.environ, FITBIT_LAKE_DIR=str(lake_dir), FITBIT_RAW_DIR=str(settings.raw_dir),
               KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
               FITBIT_SETTINGS=json.dumps({"silver.max_files_per_trigger": FILES_PER_BATCH}))
    return subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", "silver"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _in_flight(checkpoint) -> bool:
    """A batch has been planned (offsets/N) but not committed (commits/N), after at least one commit."""
    offsets = {p.name for p in (checkpoint / "offsets").glob("[0-9]*")} if (checkpoint / "offsets").exists() else set()
    commits = {p.name for p in (checkpoint / "commits").glob("[0-9]*")} if (checkpoint / "commits").exists() else set()
    return len(commits) >= 1 and bool(offsets - commits)


def _tables(lake, tables) -> dict[str, pd.DataFrame]:
    out = {}
    for table in tables:
        frame = lake.read("silver", table).drop("_version", "quarantined_at").toPandas()
        if "reasons" in frame:
            frame["reasons"] = frame["reasons"].map(tuple)
        out[table] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def test_kill_9_mid_batch_then_restart_equals_clean_run(clean_run, test_root, spark):
    from fitbit_lakehouse.catalogue import SILVER_TABLES
    from fitbit_lakehouse.silver import INGEST_LOG, reconcile
    from fitbit_lakehouse.tables import Lake

    # B: killed with SIGKILL while a batch is in flight, then restarted
    lake_b = test_root / "eo_killed"
    shutil.copytree(clean_run.lake_dir / "bronze", lake_b / "bronze")
    checkpoint = lake_b / "checkpoints" / "silver" / clean_run.get("silver.query_name")
    proc = _silver_process(clean_run, lake_b)
    deadline = time.monotonic() + 300
    while not _in_flight(checkpoint):
        assert proc.poll() is None, "silver finished before it could be killed mid-batch"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)   # into the batch's writes
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _in_flight(checkpoint), "the kill must leave a batch uncommitted"
    assert _silver_process(clean_run, lake_b).wait(timeout=600) == 0

    clean = Lake(spark, clean_run)
    killed = Lake(spark, clean_run.with_overrides(**{"paths.lake_dir": str(lake_b)}))
    tables = [t for t in (*SILVER_TABLES, "quarantine") if clean.exists("silver", t)]
    assert len(tables) >= 4
    a, b = _tables(clean, tables), _tables(killed, tables)
    for table in tables:   # row for row, lineage included: nothing twice, nothing lost
        pd.testing.assert_frame_equal(a[table], b[table], check_like=True, obj=table)
    log_a, log_b = (lake.read("silver", INGEST_LOG).drop("logged_at").toPandas()
                    .sort_values(["batch_id", "table"]).reset_index(drop=True) for lake in (clean, killed))
    pd.testing.assert_frame_equal(log_a, log_b)
    assert all(r.holds for r in reconcile(spark, killed.settings))
