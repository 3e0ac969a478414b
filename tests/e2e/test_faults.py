"""Fault injection: kill -9 after the k-th commit of a writer, restart, compare with a clean run.

One input is produced once into a topic. A clean lake runs bronze, silver and gold (in the test's own
process). A crashed lake runs `steps bronze,silver,gold` with FITBIT_KILL_AFTER=<writer>:<k> (see fitbit_lakehouse/faults.py),
which must kill it, and then again to the end. Every table and the alerts topic (as a read_committed
consumer sees it) must then equal the clean run's: nothing lost, nothing twice, quarantine included.
`make test` crashes one lake at bronze, silver and the alert publisher in turn (and loses its checkpoints);
`make chaos` crashes a fresh lake per writer and k, and loses the checkpoints after crashes.

Bronze always takes the topic in three micro-batches. Silver takes each bronze file in a micro-batch of
its own under `make chaos` (several commits per writer to crash after); elsewhere it takes them all at
once, which is quicker: how a run is cut into batches changes nothing in what the tables end up holding.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.synthetic import generate
from tests.conftest import cli_said
from tests.e2e import chaos_report
from tests.kafka_topics import delete_all_records, topic_messages

pytestmark = pytest.mark.e2e

FILES = "dailyActivity,sleepDay,hourlySteps"
SECRET = "fault-injection-test-secret"   # every lake the same user keys
MAX_K = 3
# Commits each writer makes in one clean run of this input, up to MAX_K (no more than these: checked
# against the clean lake by test_chaos_crashes_after_every_commit_there_is): gold commits once per
# table per run, silver writes quarantine and identity only for the batches that hold such rows.
COMMITS = {"bronze/events": 3, "silver/daily_activity": 3, "silver/hourly_steps": 3, "silver/sleep_day": 2,
           "silver/quarantine": 1, "silver/user_identity": 2, "silver/_ingest_log": 3,
           "gold/fact_daily_activity": 1, "gold/kpi_daily_wellness": 1, "gold/goal_alerts": 1}
# make chaos: one crash per run, every writer, after each of its first MAX_K commits
CHAOS = [f"{writer}:{k}" for writer, commits in COMMITS.items() for k in range(1, commits + 1)] + \
        ["alerts:sent:1", "alerts:committed:1"]
# make test: one lake crashed again and again (bronze mid-stream, silver mid-batch at its quarantine
# write, the alert transaction sent but not committed), the checkpoints lost after the first two
CRASHES = [("bronze/events:2", True), ("silver/quarantine:1", True), ("alerts:sent:1", False)]


@pytest.fixture(scope="module")
def topic(base_settings, broker, test_root):
    raw = test_root / "faults_raw"
    generate(raw, users=3, days=4, seed=5, heart_rate_users=1, dirty_rows=True)
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / "faults_producer"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_faults",
        "producer.records_per_message": 40})
    pipeline.produce_step(settings, file_filter=FILES)
    return settings


SILVER_FILES_CHAOS, SILVER_FILES = 1, 1000   # bronze files per silver micro-batch (see above)


def _run_overrides(alerts_topic, silver_files) -> dict:
    """How every run of these tests is cut, in a process of its own (_run) or in this one (_run_here)."""
    return {"kafka.alerts_topic": alerts_topic, "bronze.max_offsets_per_trigger": 10,
            "silver.max_files_per_trigger": silver_files}


def _run(topic, lake_dir, alerts_topic, kill_after=None, silver_files=SILVER_FILES, timeout=900) -> int:
    env = dict(os.environ, FITBIT_LAKE_DIR=str(lake_dir), KAFKA_BOOTSTRAP_SERVERS=topic.bootstrap_servers,
               FITBIT_USER_KEY_SECRET=SECRET, FITBIT_SETTINGS=json.dumps({
                   "kafka.events_topic": topic.events_topic, "spark.shuffle_partitions": 2,
                   **_run_overrides(alerts_topic, silver_files)}))
    env.pop("FITBIT_KILL_AFTER", None)
    if kill_after:
        env["FITBIT_KILL_AFTER"] = kill_after
    proc = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "steps", "bronze,silver,gold"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode not in (0, -9):
        log = lake_dir / "steps.stderr"
        log.write_text(proc.stderr)
        causes = [line for line in proc.stderr.splitlines() if "Error" in line or "Exception" in line][:5]
        raise AssertionError(f"steps failed ({proc.returncode}), see {log}: " + "\n".join(causes))
    return proc.returncode


def _run_here(topic, lake_dir, alerts_topic, silver_files=SILVER_FILES) -> None:
    """The same steps as _run, in the test's own process (its warm Spark saves a JVM's start); a step
    whose reconciliation fails raises."""
    settings = topic.with_overrides(**{"paths.lake_dir": str(lake_dir), **_run_overrides(alerts_topic, silver_files)})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FITBIT_USER_KEY_SECRET", SECRET)
        for step in (pipeline.bronze_step, pipeline.silver_step, pipeline.gold_step):
            step(settings)


def _alerts(settings, alerts_topic) -> Counter:
    return Counter(m.key.decode() for m in topic_messages(settings.bootstrap_servers, alerts_topic))


def _snapshot(spark, settings, lake_dir) -> dict[str, pd.DataFrame]:
    from fitbit_lakehouse.catalogue import SILVER_TABLES
    from fitbit_lakehouse.gold import GOLD_KEYS
    from fitbit_lakehouse.silver import IDENTITY
    from fitbit_lakehouse.tables import Lake

    lake = Lake(spark, settings.with_overrides(**{"paths.lake_dir": str(lake_dir)}))
    tables = [("bronze", "events")] + [("silver", t) for t in (*SILVER_TABLES, "quarantine", IDENTITY)] + \
             [("gold", t) for t in GOLD_KEYS]
    out = {}
    for layer, name in tables:
        if not lake.exists(layer, name):
            continue
        frame = lake.read(layer, name).drop("ingested_at", "quarantined_at", "_version").toPandas()
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
                frame[column] = frame[column].map(lambda v: json.dumps(v, default=str, sort_keys=True))
        out[f"{layer}/{name}"] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _chaos_selected(request) -> bool:
    return any(item.get_closest_marker("chaos") for item in request.session.items)


@pytest.fixture(scope="module")
def clean(topic, test_root, spark, request):
    """The run nothing crashes: the same steps, in this process (its warm Spark saves a JVM's start)."""
    lake_dir = test_root / "faults_clean"
    # under make chaos the clean run is cut as the crashed ones are: its commits are the ones to cover
    silver_files = SILVER_FILES_CHAOS if _chaos_selected(request) else SILVER_FILES
    _run_here(topic, lake_dir, "e2e_faults_alerts_clean", silver_files)
    snapshot = _snapshot(spark, topic, lake_dir)
    assert len(snapshot["bronze/events"]) > 100 and len(snapshot["silver/quarantine"]) > 0
    alerts = _alerts(topic, "e2e_faults_alerts_clean")
    assert sum(alerts.values()) == len(snapshot["gold/goal_alerts"]) > 0
    return snapshot, alerts


def _compare(spark, topic, lake_dir, alerts_topic, snapshot, alerts, scenario, runs, detail="") -> None:
    got = _snapshot(spark, topic, lake_dir)
    got_alerts = _alerts(topic, alerts_topic)
    quarantine = got.get("silver/quarantine", pd.DataFrame(columns=snapshot["silver/quarantine"].columns))
    quarantine_once = not quarantine.duplicated(["source_file", "row_number", "record_part", "raw_value"]).any()
    lost = sum((alerts - got_alerts).values()) + sum(len(f) for t, f in snapshot.items() if t not in got)
    duplicated = sum((got_alerts - alerts).values())
    for table in set(snapshot) & set(got):
        table_lost, table_duplicated = chaos_report.row_differences(snapshot[table], got[table])
        lost, duplicated = lost + table_lost, duplicated + table_duplicated
    chaos_report.record(scenario, runs, lost, duplicated, quarantine_once, detail)

    assert set(got) == set(snapshot)
    for table, frame in snapshot.items():   # row for row: nothing lost, nothing twice
        pd.testing.assert_frame_equal(got[table], frame, check_like=True, obj=f"{scenario}: {table}")
    assert quarantine_once
    assert got_alerts == alerts   # each alert once on the topic


def _crash_and_compare(scenario, topic, clean, test_root, spark):
    snapshot, alerts = clean
    name = scenario.replace("/", "_").replace(":", "_")
    lake_dir, alerts_topic = test_root / f"faults_{name}", f"e2e_faults_alerts_{name}"
    assert _run(topic, lake_dir, alerts_topic, kill_after=scenario, silver_files=SILVER_FILES_CHAOS) == -9, \
        f"{scenario} never reached: not killed"
    assert _run(topic, lake_dir, alerts_topic, silver_files=SILVER_FILES_CHAOS) == 0
    _compare(spark, topic, lake_dir, alerts_topic, snapshot, alerts, scenario, runs=2,
             detail="kill -9 after that commit, then a run to the end")


def test_crash_after_crash_then_a_clean_finish_equals_clean_run(topic, clean, test_root, spark):
    snapshot, alerts = clean
    lake_dir, alerts_topic = test_root / "faults_chain", "e2e_faults_alerts_chain"
    for scenario, lose_checkpoints in CRASHES:
        assert _run(topic, lake_dir, alerts_topic, kill_after=scenario) == -9, f"{scenario} never reached"
        if lose_checkpoints:
            shutil.rmtree(lake_dir / "checkpoints")
    # the clean finish after the crashes, in this process: recovery lives in the lake and its checkpoints
    _run_here(topic, lake_dir, alerts_topic)   # the silver reconciliation holds, or this raises
    _compare(spark, topic, lake_dir, alerts_topic, snapshot, alerts, "chain: " + ", ".join(s for s, _ in CRASHES),
             runs=len(CRASHES) + 1, detail="crash after crash, checkpoints lost after the first two")


@pytest.mark.chaos   # how many batches a run makes varies with timing: a check for `make chaos`, not a gate
def test_chaos_crashes_after_every_commit_there_is(clean, test_root):
    """The chaos list leaves no commit out: for each writer it holds every k up to MAX_K that this clean
    run reached. (How many silver batches a run makes varies a little with timing: `make chaos` reached
    every listed k; a run with fewer commits than listed reports that k as never reached.)"""
    clean_lake = test_root / "faults_clean"
    made = {writer: len(list((clean_lake / writer / "_delta_log").glob("*.json"))) for writer in COMMITS}
    assert all(n >= 1 for n in made.values()), made
    uncovered = {w: n for w, n in made.items() if min(n, MAX_K) > COMMITS[w]}
    assert not uncovered, f"commits no chaos scenario crashes after: {uncovered}"


@pytest.mark.chaos
@pytest.mark.parametrize("scenario", CHAOS)
def test_chaos_kill_after_every_early_commit(scenario, topic, clean, test_root, spark):
    _crash_and_compare(scenario, topic, clean, test_root, spark)


@pytest.mark.chaos
@pytest.mark.parametrize("scenario", ["bronze/events:3", "silver/daily_activity:1", "silver/daily_activity:2",
                                      "gold/fact_daily_activity:1"])
def test_checkpoints_deleted_tables_kept_equals_clean_run(scenario, topic, clean, test_root, spark):
    """A crash, then the whole checkpoints folder lost: bronze goes on after the offsets it holds, silver
    and gold (new app ids, so no write is wrongly skipped as done) redo their work idempotently."""
    snapshot, alerts = clean
    name = "ckpt_" + scenario.replace("/", "_").replace(":", "_")
    lake_dir, alerts_topic = test_root / f"faults_{name}", f"e2e_faults_alerts_{name}"
    assert _run(topic, lake_dir, alerts_topic, kill_after=scenario, silver_files=SILVER_FILES_CHAOS) == -9
    shutil.rmtree(lake_dir / "checkpoints")
    assert _run(topic, lake_dir, alerts_topic, silver_files=SILVER_FILES_CHAOS) == 0   # reconciles, or this fails
    _compare(spark, topic, lake_dir, alerts_topic, snapshot, alerts, f"{scenario} + checkpoints deleted", runs=2,
             detail="kill -9, the checkpoints folder deleted, tables kept")


def _bronze_of_a_small_topic(base_settings, broker, test_root, spark, name: str):
    """A small synthetic day's dailyActivity produced into topic e2e_<name> and landed in bronze:
    its settings, its lake, and the bronze records it holds."""
    from fitbit_lakehouse.tables import Lake

    raw = test_root / f"{name}_raw"
    generate(raw, users=2, days=2, seed=9, heart_rate_users=0)
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / f"faults_{name}"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": f"e2e_{name}",
        "kafka.alerts_topic": f"e2e_{name}_alerts", "producer.records_per_message": 5})
    pipeline.produce_step(settings, file_filter="dailyActivity")
    pipeline.bronze_step(settings)
    lake = Lake(spark, settings)
    return settings, lake, lake.count("bronze", "events")


def test_a_recreated_topic_stops_bronze_with_a_clear_error(base_settings, broker, test_root, spark):
    from kafka import KafkaAdminClient

    from fitbit_lakehouse.bronze import DataLossError

    settings, lake, landed = _bronze_of_a_small_topic(base_settings, broker, test_root, spark, "recreated")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.delete_topics([settings.events_topic])
    deadline = time.monotonic() + 60
    while settings.events_topic in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.5)
    admin.close()
    # the new topic gets more messages than the old one had: offsets alone could not tell the difference
    pipeline.produce_step(settings, file_filter="dailyActivity,hourlySteps", replay=True)
    with pytest.raises(DataLossError, match="deleted and recreated") as failure:
        pipeline.bronze_step(settings)
    assert "\n" not in str(failure.value) and "clean-lake" in str(failure.value)
    assert lake.count("bronze", "events") == landed   # nothing read from the new topic


def test_records_the_topics_retention_deleted_before_bronze_landed_them_stop_bronze_with_a_clear_error(
        base_settings, broker, test_root, spark):
    """Nothing is skipped silently: records gone from Kafka before bronze read them (retention, or
    Kafka's DeleteRecords as here) stop bronze with one line, and bronze lands nothing after the gap."""
    from fitbit_lakehouse.bronze import DataLossError

    settings, lake, landed = _bronze_of_a_small_topic(base_settings, broker, test_root, spark, "retention")
    pipeline.produce_step(settings, file_filter="hourlySteps")   # not landed yet ...
    delete_all_records(broker.bootstrap_servers, settings.events_topic)   # ... and gone from the topic
    with pytest.raises(DataLossError, match="retention removed them") as failure:
        pipeline.bronze_step(settings)
    assert "\n" not in str(failure.value) and "produce --replay" in str(failure.value)
    assert lake.count("bronze", "events") == landed
    # the CLI says it in one line: no stack trace of the Spark loggers before it
    env = dict(os.environ, FITBIT_LAKE_DIR=str(settings.lake_dir), KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
               FITBIT_SETTINGS=json.dumps({"kafka.events_topic": settings.events_topic, "spark.shuffle_partitions": 2}))
    cli = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "bronze"], env=env, capture_output=True,
                         text=True, timeout=300)
    said = cli_said(cli.stderr)
    assert cli.returncode == 2 and len(said) == 1 and said[0].startswith("error: Records of e2e_retention"), cli.stderr
    assert "Kafka said: " in said[0] and "Exception" not in said[0], said[0]   # Kafka's words, not a Java class
