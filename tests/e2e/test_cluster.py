"""The same pipeline on real clusters: a Spark standalone cluster (a master, two workers: executors in
other JVMs) and a three-node KRaft Kafka cluster (replication 3, min.insync.replicas 2, acks=all).

The month-2 slice runs end to end on the clusters, with one broker SIGKILLed in the middle of produce
and another in the middle of bronze, each started again afterwards. Gold must equal, row for row, a
local[*] run of the same files through the session's single broker; every acknowledged row must be
in bronze exactly once; and the replicas of the killed brokers must catch up.
`make test-cluster` (called by .ci/run) runs it; `make test` leaves it out.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.catalogue import scan_sources
from fitbit_lakehouse.cluster import KafkaCluster, SparkCluster
from fitbit_lakehouse.produce import source_name
from tests.conftest import MONTH2_SLICE
from tests.e2e.slowed_sends import count_and_slow_sends

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

SECRET = "cluster-test-secret"
GOLD = ("dim_user", "dim_date", "fact_daily_activity", "fact_sleep", "fact_hourly_activity", "fact_weight",
        "kpi_daily_wellness", "goal_alerts")


def _free_run(count: int) -> int:
    """The first of `count` consecutive free ports."""
    for base in range(21000, 40000, 97):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def month2():
    """Always the committed slice (a few hundred real rows a file): small enough for 2 cores, and the
    slowed producer leaves time to kill a broker in the middle of it."""
    return MONTH2_SLICE


@pytest.fixture(scope="module")
def clusters(base_settings, test_root):
    base = _free_run(8)
    settings = base_settings.with_overrides(**{
        "paths.lake_dir": str(test_root / "clusters"), "cluster.spark.master_port": base,
        "cluster.spark.webui_port": base + 1, "cluster.kafka.first_port": base + 2,
        "cluster.kafka.first_controller_port": base + 5})
    kafka, spark = KafkaCluster(settings), SparkCluster(settings)
    try:
        kafka.up()
        spark.up()
        yield kafka, spark
    finally:
        spark.down()
        kafka.down()


def _gold(lake_dir) -> dict[str, pd.DataFrame]:
    from deltalake import DeltaTable

    out = {}
    for name in GOLD:
        path = lake_dir / "gold" / name
        if path.is_dir():
            frame = DeltaTable(str(path)).to_pandas()
            out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def local_run(base_settings, broker, month2, test_root, spark):
    """The reference: local[*] Spark (the session's) and the session's single broker."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FITBIT_USER_KEY_SECRET", SECRET)
        settings = base_settings.with_overrides(**{
            "paths.raw_dir": str(month2), "paths.lake_dir": str(test_root / "cluster_reference"),
            "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_cluster_reference",
            "kafka.alerts_topic": "e2e_cluster_reference_alerts"})
        pipeline.produce_step(settings)
        pipeline.bronze_step(settings)
        pipeline.silver_step(settings)
        pipeline.gold_step(settings)
    return _gold(settings.lake_dir)


def _kill_when(kafka: KafkaCluster, node_index: int, condition, happened: dict, key: str) -> threading.Thread:
    def run():
        deadline = time.monotonic() + 600
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        kafka.kill_node(kafka.nodes[node_index])
        happened[key] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _in_sync(kafka: KafkaCluster, topic: str) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="fitbit-cluster-test")
    try:
        partitions = admin.describe_topics([topic])[0]["partitions"]
        return all(len(p["isr_nodes"]) == len(kafka.nodes) for p in partitions)
    finally:
        admin.close()


@pytest.fixture(scope="module")
def cluster_run(clusters, base_settings, month2, test_root, monkeypatch_module):
    kafka, spark = clusters
    lake_dir = test_root / "cluster_lake"
    monkeypatch_module.setenv("FITBIT_USER_KEY_SECRET", SECRET)
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(month2), "paths.lake_dir": str(lake_dir),
        "kafka.bootstrap_servers": kafka.bootstrap_servers, "kafka.events_topic": "e2e_cluster_events",
        "kafka.alerts_topic": "e2e_cluster_alerts", "producer.records_per_message": 10})
    happened: dict = {}
    # produce, slowed a little, with broker 1 killed a third of the way through
    with pytest.MonkeyPatch.context() as patch:
        sent = count_and_slow_sends(patch)
        killer = _kill_when(kafka, 0, lambda: sent["messages"] >= 100, happened, "produce")
        produced = pipeline.produce_step(settings)
    killer.join(60)
    kafka.start_node(kafka.nodes[0])

    # bronze, silver and gold as a user would run them on the clusters; broker 2 killed mid-bronze
    def bronze_commits() -> int:
        log_dir = lake_dir / "bronze" / "events" / "_delta_log"
        return len(list(log_dir.glob("*.json"))) if log_dir.is_dir() else 0

    killer = _kill_when(kafka, 1, lambda: bronze_commits() >= 3, happened, "bronze")
    env = dict(os.environ, SPARK_MASTER=spark.master_url, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
               FITBIT_LAKE_DIR=str(lake_dir), FITBIT_RAW_DIR=str(month2), FITBIT_USER_KEY_SECRET=SECRET,
               FITBIT_SETTINGS=json.dumps({"kafka.events_topic": settings.events_topic,
                                           "kafka.alerts_topic": settings.alerts_topic,
                                           "bronze.max_offsets_per_trigger": 40, "spark.shuffle_partitions": 2}))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "steps", "bronze,silver,gold"], env=env,
                          capture_output=True, text=True, timeout=1200)
    wall = time.monotonic() - started
    killer.join(60)
    kafka.start_node(kafka.nodes[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"settings": settings, "produced": produced, "happened": happened, "lake_dir": lake_dir,
            "wall_s": wall, "spark": spark, "kafka": kafka}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_broker_was_lost_during_produce_and_during_bronze(cluster_run):
    assert {"produce", "bronze"} <= set(cluster_run["happened"])


def test_the_run_used_the_spark_cluster_and_its_workers(cluster_run):
    status = cluster_run["spark"].status()
    assert sum(1 for w in status["workers"] if w["state"] == "ALIVE") == 2
    apps = status.get("completedapps", []) + status.get("activeapps", [])
    assert any(a["name"] == cluster_run["settings"].get("spark.app_name") for a in apps)


def test_every_acknowledged_row_is_in_bronze_exactly_once(cluster_run, month2, spark):
    from fitbit_lakehouse.tables import Lake

    settings = cluster_run["settings"]
    expected = Counter()
    for path, _kind in scan_sources(month2).files:
        rows = len(pd.read_csv(path))
        expected.update((source_name(path, month2), n) for n in range(1, rows + 1))
    assert cluster_run["produced"]["rows"] == sum(expected.values())
    events = Lake(spark, settings).read("bronze", "events").select("source_file", "row_number").toPandas()
    assert Counter(zip(events["source_file"], events["row_number"].astype(int))) == expected


def test_gold_on_the_clusters_equals_the_local_run_row_for_row(cluster_run, local_run):
    got = _gold(cluster_run["lake_dir"])
    assert set(got) == set(local_run)
    for name, frame in local_run.items():
        pd.testing.assert_frame_equal(got[name], frame, check_like=True, obj=name)


def test_topics_have_three_replicas_and_the_killed_brokers_catch_up(cluster_run):
    from kafka import KafkaAdminClient

    kafka, topic = cluster_run["kafka"], cluster_run["settings"].events_topic
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="fitbit-cluster-test")
    try:
        partitions = admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()
    assert all(len(p["replica_nodes"]) == 3 for p in partitions)
    deadline = time.monotonic() + 120
    while not _in_sync(kafka, topic):
        assert time.monotonic() < deadline, "the restarted brokers did not catch up"
        time.sleep(1)
