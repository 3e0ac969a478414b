"""`make spark-up`: runs attach to one kept Spark JVM, one after another, and each starts clean.

A real keeper (`python -m fitbit_lakehouse spark up`) in a directory of the test's own; the runs are
real processes on it: Delta writes, a run killed with -9 while attached, a table deleted and written
again at the same path, and bronze's stream from the real broker. The cases where a run must start
its own JVM instead (the kept one busy, gone, or started with other options) are checked on
`attach` itself, which decides before PySpark is touched.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse import spark_server
from fitbit_lakehouse.kafka_broker import ensure_topics
from fitbit_lakehouse.produce import produce_from_settings
from tests.conftest import MONTH2_SLICE, ROOT

pytestmark = pytest.mark.e2e

# a run in miniature: its own session, a Delta table written and read back, the JVM's pid; then it
# stays attached for argv[3] seconds when given (a run still busy)
CLIENT = """
import json, sys, time
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.spark import get_spark
spark = get_spark(load_settings())
first_proxy_id = spark.sparkContext._gateway.gateway_property.pool.next_id
table, rows = sys.argv[1], int(sys.argv[2])
spark.range(rows).selectExpr("id", "id % 3 AS k").write.format("delta").save(table)
count = spark.read.format("delta").load(table).count()
print(json.dumps({"jvm_pid": spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid(), "count": count,
                  "first_proxy_id": first_proxy_id, "local_dir": spark.conf.get("spark.local.dir"),
                  "tmpdir": spark.sparkContext._jvm.java.lang.System.getProperty("java.io.tmpdir")}), flush=True)
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))
"""


@pytest.fixture(scope="module")
def keeper(tmp_path_factory, base_settings):
    """A kept JVM of this module, and the environment of runs that attach to it."""
    home = tmp_path_factory.mktemp("kept-jvm")
    overrides = {"spark.kept_jvm.dir": str(home / "server"), "spark.master": "local[1]",
                 "spark.shuffle_partitions": 2, "spark.kept_jvm.claim_timeout_s": 1}
    env = dict(os.environ, SPARK_KEPT_JVM="on", FITBIT_LAKE_DIR=str(home / "lake"),
               FITBIT_SETTINGS=json.dumps(overrides))
    up = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "spark", "up"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    settings = base_settings.with_overrides(**overrides, **{"spark.kept_jvm.attach": "on"})
    gateway = json.loads((home / "server" / "gateway.json").read_text())
    yield {"env": env, "home": home, "settings": settings, "jvm_pid": gateway["jvm_pid"]}
    subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "spark", "down"], env=env, cwd=ROOT, timeout=120)


def _client(keeper, table: Path, rows: int, hold_s: float | None = None) -> subprocess.Popen:
    args = [sys.executable, "-c", CLIENT, str(table), str(rows)] + ([str(hold_s)] if hold_s else [])
    return subprocess.Popen(args, env=keeper["env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, f"the run ended without a result:\n{proc.stderr.read()[-3000:]}"
    return json.loads(line)


def test_runs_attach_one_after_another_and_each_starts_clean(keeper):
    table = keeper["home"] / "lake" / "t"
    first = _client(keeper, table, 10)
    results = [_result(first)]
    assert first.wait(120) == 0

    # a run killed while attached leaves its SparkContext in the JVM: the next run still starts
    killed = _client(keeper, keeper["home"] / "lake" / "u", 10, hold_s=300)
    results.append(_result(killed))
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)

    # the same path deleted and written again: the JVM's cached Delta log of the old table must not answer
    shutil.rmtree(table)
    again = _client(keeper, table, 5)
    results.append(_result(again))
    assert again.wait(120) == 0
    assert [(r["jvm_pid"], r["count"]) for r in results] == [(keeper["jvm_pid"], 10)] * 2 + [(keeper["jvm_pid"], 5)]
    # py4j numbers a process's Python objects from p0, and the JVM's finalizers tell the attached process
    # to drop ids: an earlier run's ids must not be a later run's (silver's foreachBatch: "Object ID
    # unknown", seen at the 7th run on one kept JVM), so each run numbers from a random start
    starts = [r["first_proxy_id"] for r in results]
    assert len(set(starts)) == 3 and min(starts) > 10_000, starts
    # scratch files: the kept JVM's own in the keeper's dir, each run's shuffle files in its lake's scratch
    assert {r["tmpdir"] for r in results} == {str(keeper["home"] / "server" / "tmp")}
    assert all(Path(r["local_dir"]).parent == keeper["home"] / "lake" / "_spark_tmp" for r in results)

    # a run that ended without stopping its SparkContext: the keeper stops it once the run's lock is free
    log = keeper["home"] / "server" / "server.log"
    deadline = time.monotonic() + 30
    while "stopping the SparkContext of a run that has ended" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)


def test_bronze_streams_from_the_broker_on_the_kept_jvm(keeper, broker, monkeypatch):
    daily = pd.read_csv(MONTH2_SLICE / "dailyActivity_merged.csv", dtype=str)
    lake = keeper["home"] / "lake-bronze"
    topics = {"kafka.events_topic": "e2e_kept_jvm_events", "kafka.alerts_topic": "e2e_kept_jvm_alerts"}
    settings = keeper["settings"].with_overrides(**{"paths.raw_dir": str(MONTH2_SLICE), "paths.lake_dir": str(lake),
                                                    "kafka.bootstrap_servers": broker.bootstrap_servers, **topics})
    monkeypatch.setenv("FITBIT_USER_KEY_SECRET", "kept-jvm-test")
    ensure_topics(settings)
    assert produce_from_settings(settings, file_filter="dailyActivity").rows == len(daily)
    env = dict(keeper["env"], FITBIT_LAKE_DIR=str(lake), FITBIT_RAW_DIR=str(MONTH2_SLICE),
               KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, FITBIT_USER_KEY_SECRET="kept-jvm-test",
               FITBIT_SETTINGS=json.dumps({**json.loads(keeper["env"]["FITBIT_SETTINGS"]), **topics}))
    done = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "bronze"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"attached to the kept Spark JVM (pid {keeper['jvm_pid']})" in done.stderr
    from deltalake import DeltaTable

    assert len(DeltaTable(str(lake / "bronze" / "events")).to_pandas(columns=["value"])) == len(daily)


def test_a_run_starts_its_own_jvm_when_the_kept_one_is_busy(keeper, caplog):
    lock_file = keeper["home"] / "server" / "lock"
    with open(lock_file, "a") as held:   # what an attached run holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.spark_server"):
            assert spark_server.attach(keeper["settings"]) is False
        assert "busy with another run" in spark_server.plan(keeper["settings"])   # make run's console line
    assert "busy with another run" in caplog.text
    assert spark_server.plan(keeper["settings"]) == f"the kept JVM of make spark-up (pid {keeper['jvm_pid']})"


def test_a_run_starts_its_own_jvm_when_the_kept_one_has_other_options(keeper, caplog):
    other = keeper["settings"].with_overrides(**{"spark.driver_memory": "1234m"})
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.spark_server"):
        assert spark_server.attach(other) is False
    assert "other jars or JVM options" in caplog.text
    assert "other jars or JVM options" in spark_server.plan(other)


def test_a_run_starts_its_own_jvm_when_the_kept_one_is_gone(keeper, caplog):
    keeper_pid = spark_server.running_pid(keeper["settings"])
    gateway_file = keeper["home"] / "server" / "gateway.json"
    saved = gateway_file.read_text()
    os.kill(keeper["jvm_pid"], signal.SIGKILL)
    os.kill(keeper_pid, signal.SIGKILL)   # a keeper killed: its address file stays behind
    deadline = time.monotonic() + 30
    while spark_server.running_pid(keeper["settings"]) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    gateway_file.write_text(saved)
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.spark_server"):
        assert spark_server.attach(keeper["settings"]) is False
    assert "no longer running" in caplog.text
    assert not gateway_file.exists()
