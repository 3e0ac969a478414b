"""A broker that dies: SIGKILL the Kafka broker in the middle of produce and in the middle of bronze,
start it again on the same log, and finish the run. Every row the producer had acknowledged is in
bronze exactly once, and silver reconciles.

The broker here is one of its own (another port and log dir), so the session's broker is untouched.
Expected rows come from the CSV files: every data row of every file, once.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.catalogue import scan_sources
from fitbit_lakehouse.produce import source_name
from fitbit_lakehouse.kafka_broker import LocalBroker, ensure_broker, free_port, stop_local_broker
from fitbit_lakehouse.synthetic import generate
from fitbit_lakehouse.tables import Lake
from tests.e2e import chaos_report
from tests.e2e.slowed_sends import count_and_slow_sends

pytestmark = pytest.mark.e2e

FILES = "dailyActivity,hourlySteps"


@pytest.fixture(scope="module")
def own_broker(base_settings, test_root):
    raw = test_root / "broker_loss_raw"
    generate(raw, users=3, days=3, seed=11, heart_rate_users=0)
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / "broker_loss"),
        "kafka.bootstrap_servers": f"localhost:{free_port()}", "kafka.events_topic": "e2e_broker_loss",
        "kafka.alerts_topic": "e2e_broker_loss_alerts", "bronze.max_offsets_per_trigger": 40,
        "silver.max_files_per_trigger": 1000})
    ensure_broker(settings)
    yield settings
    stop_local_broker(settings)



def test_the_broker_maps_the_class_data_archive_of_make_setup(own_broker):
    """make setup records the broker's classes (a faster start); a JVM that refused the archive would
    start without it, silently: the running broker must have it mapped."""
    from fitbit_lakehouse.kafka_broker import broker_cds_archive

    broker = LocalBroker(own_broker)
    archive = broker_cds_archive(own_broker, broker.classpath())
    assert archive.is_file(), "make setup did not record the broker's class-data archive"
    assert str(archive) in Path(f"/proc/{broker.running_pid()}/maps").read_text()

def _kill_and_restart(settings, when, down_s: float = 3.0, progress=None) -> dict:
    """In a thread: once when() holds, SIGKILL the broker, wait, start it again on the same log.
    progress(), when given, is noted at the kill (how far the step under test had come)."""
    happened = {}

    def run():
        deadline = time.monotonic() + 300
        while not when() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = LocalBroker(settings).running_pid()
        assert pid, "the test's broker is not running"
        os.kill(pid, signal.SIGKILL)
        happened["killed_at"] = time.monotonic()
        if progress is not None:
            happened["progress_at_kill"] = progress()
        time.sleep(down_s)
        ensure_broker(settings)
        happened["restarted_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    happened["thread"] = thread
    return happened


def _expected_rows(settings) -> Counter:
    """(source file, row number) of every data row of the files the test sends: each once."""
    rows = Counter()
    for path, kind in scan_sources(settings.raw_dir).files:
        if kind.kind in FILES.split(","):
            frame = pd.read_csv(path)
            rows.update((source_name(path, settings.raw_dir), n) for n in range(1, len(frame) + 1))
    return rows


def test_broker_killed_mid_produce_and_mid_bronze_loses_and_doubles_nothing(own_broker, spark, monkeypatch):
    settings = own_broker
    lake = Lake(spark, settings)
    # one row per message, a little slowed down, so that the kill lands in the middle of produce
    sent = count_and_slow_sends(monkeypatch)
    outage = _kill_and_restart(settings, lambda: sent["messages"] >= 150)
    summary = pipeline.produce_step(settings.with_overrides(**{"producer.records_per_message": 1}),
                                    file_filter=FILES)
    monkeypatch.undo()
    outage["thread"].join(120)
    assert "restarted_at" in outage, "the broker was never killed during produce"
    assert summary["messages"] > 150   # the kill came while there was still more to send

    # bronze: a small trigger so that it takes many batches; the kill lands after the third commit
    def bronze_commits() -> int:
        log_dir = settings.lake_dir / "bronze" / "events" / "_delta_log"
        return len(list(log_dir.glob("*.json"))) if log_dir.is_dir() else 0

    outage = _kill_and_restart(settings, lambda: bronze_commits() >= 4, progress=bronze_commits)
    try:
        pipeline.bronze_step(settings)
    except Exception:   # noqa: BLE001 - a lost broker may fail the query; a restart must then finish it
        outage["thread"].join(120)
        pipeline.bronze_step(settings)
    outage["thread"].join(120)
    assert "restarted_at" in outage, "the broker was never killed during bronze"
    pipeline.bronze_step(settings)   # whatever was left
    # bronze went on committing after the kill: the broker died while bronze was mid-stream
    assert outage["progress_at_kill"] < bronze_commits(), outage

    events = lake.read("bronze", "events").select("source_file", "row_number").toPandas()
    landed = Counter(zip(events["source_file"], events["row_number"].astype(int)))
    expected = _expected_rows(settings)
    chaos_report.record("broker SIGKILLed mid produce and mid bronze", runs=2,
                        lost=sum((expected - landed).values()), duplicated=sum((landed - expected).values()),
                        detail="bronze rows against every data row of the CSVs; restarted on its log")
    assert sum(expected.values()) == summary["rows"]      # the producer acknowledged every row ...
    assert landed == expected                             # ... and each is in bronze exactly once
    report = pipeline.silver_step(settings)
    assert all(r["holds"] for r in report)


def test_a_fresh_lake_does_not_send_into_the_topic_of_another_lakes_broker(own_broker, test_root):
    """This module's lake has its broker up and its events in the topic. A second lake on the same
    address (FITBIT_LAKE_DIR changed, the broker left running) would send into that topic, which the
    first lake reads: one line instead, nothing sent. A topic of its own on that broker goes on, and so
    does a bronze that reads the topic on purpose (a new lake built from another's stream)."""
    from fitbit_lakehouse.kafka_broker import BrokerError, refuse_another_lakes_topic

    another = own_broker.with_overrides(**{"paths.lake_dir": str(test_root / "another_lake")})
    messages = _topic_size(own_broker)
    with pytest.raises(BrokerError) as failure:
        pipeline.produce_step(another)
    assert str(failure.value) == (
        f"The broker at {own_broker.bootstrap_servers} is the one this project started for another lake (its files "
        f"in {LocalBroker(own_broker).home}), and its topic e2e_broker_loss is that lake's: stop it first "
        f"(make kafka-down with that lake's FITBIT_LAKE_DIR), or give this lake a broker of its own "
        f"(KAFKA_BOOTSTRAP_SERVERS=localhost:<free port>).")
    assert _topic_size(own_broker) == messages and not (another.lake_dir / "_producer").exists()
    refuse_another_lakes_topic(another.with_overrides(**{"kafka.events_topic": "e2e_another_lake"}))
    assert not ensure_broker(another).started_here   # bronze's way in: the broker, as it is


def _topic_size(settings) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in consumer.partitions_for_topic(settings.events_topic)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def _make_alerts_beside(settings, capsys) -> dict:
    """make alerts in a thread: what it returned or raised. It used to log kafka-python's reconnect
    errors for ever once its broker was gone, then print every alert of the next lake's broker."""
    from fitbit_lakehouse.alerts import consume_alerts

    ended: dict = {}

    def run():
        try:
            ended["seen"] = consume_alerts(settings)
        except Exception as exc:   # noqa: BLE001 - the test reads it
            ended["error"] = exc

    ended["thread"] = threading.Thread(target=run, daemon=True)
    ended["thread"].start()
    printed = ""
    deadline = time.monotonic() + 60
    while "Waiting for alerts" not in printed and ended["thread"].is_alive() and time.monotonic() < deadline:
        printed += capsys.readouterr().out   # it says so once its consumer is connected
        time.sleep(0.2)
    assert "Waiting for alerts" in printed, ended
    return ended


def test_clean_lake_stops_the_lakes_broker_and_deletes_its_topics_with_the_lake(own_broker, capsys):
    """make clean-lake, last in this module (its lake is done with): the broker the project started
    for the lake is stopped, and its topic data goes with the tables; the raw CSVs stay."""
    from fitbit_lakehouse.kafka_broker import speaks_kafka
    from fitbit_lakehouse.maintenance import clean_lake

    settings = own_broker
    pid = LocalBroker(settings).running_pid()
    assert pid and speaks_kafka(settings.bootstrap_servers, 5)
    alerts_console = _make_alerts_beside(settings.with_overrides(**{"kafka.probe_timeout_s": 2}), capsys)
    deleted = {p.name for p in clean_lake(settings)}
    alerts_console["thread"].join(30)   # make alerts, left open beside it, ends in one line
    assert not alerts_console["thread"].is_alive()
    assert "has not answered for 2 s" in str(alerts_console.get("error")) and "\n" not in str(alerts_console["error"])
    assert {"bronze", "silver", "checkpoints", "_producer", "kafka"} <= deleted, deleted
    assert not speaks_kafka(settings.bootstrap_servers, 2)
    cmdline = Path(f"/proc/{pid}/cmdline")
    assert not cmdline.exists() or b"kafka.Kafka" not in cmdline.read_bytes()   # gone (or a zombie)
    assert not any((settings.lake_dir / name).exists() for name in deleted)
    assert any(settings.raw_dir.rglob("*.csv"))
