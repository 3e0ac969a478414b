"""Freshness under `make stream`: from an event's send to its effect in gold's kpi_daily_wellness,
next to a bare Kafka -> Delta passthrough query with the same trigger, on the same broker.

A paced replay (`produce --speed`) of the first days of month 2's dailyActivity releases one day of
rows at a time. A poller reads the target table with delta-rs every half second and notes when each
row first shows up; the send time is the Kafka record's timestamp (CreateTime, set by the producer).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

POLL_S = 0.5


def paced_raw(month2: Path, target: Path, first_day: int, days: int) -> Path:
    """dailyActivity of `days` days of month 2 from its `first_day` (0 = the first), in the Kaggle
    file's own format."""
    target.mkdir(parents=True, exist_ok=True)
    source = month2 / "dailyActivity_merged.csv"
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    day = (pd.to_datetime(frame["ActivityDate"], format="%m/%d/%Y") - pd.to_datetime(
        frame["ActivityDate"], format="%m/%d/%Y").min()).dt.days
    keep = frame[(day >= first_day) & (day < first_day + days)]
    with open(target / source.name, "w", newline="") as handle:
        handle.write(",".join(frame.columns) + "\r\n")
        handle.write("".join(",".join(r) + "\r\n" for r in keep.itertuples(index=False)))
    return target


class FirstSeen:
    """Polls a Delta table and remembers when each key first appeared (wall clock, epoch seconds)."""

    def __init__(self, path: Path, key_columns: list[str]):
        self.path, self.columns, self.seen = path, key_columns, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from deltalake import DeltaTable

        while not self._stop.is_set():
            now = time.time()
            try:
                frame = DeltaTable(str(self.path)).to_pandas(columns=self.columns)
            except Exception:   # noqa: BLE001 - not created yet, or a commit in flight
                frame = None
            if frame is not None:
                for key in frame.itertuples(index=False, name=None):
                    self.seen.setdefault(key, now)
            self._stop.wait(POLL_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def _sent_times(settings, topic: str) -> list[tuple[bytes, float, int]]:
    """(value, send time in epoch seconds, offset) of every record of the topic."""
    from kafka import KafkaConsumer, TopicPartition

    from fitbit_lakehouse.kafka_broker import client_options

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **client_options(settings),
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return [(m.value, m.timestamp / 1000, m.offset) for m in consumer]
    finally:
        consumer.close()


def _user_day(value: bytes, secret: str) -> tuple[str, int]:
    from fitbit_lakehouse.privacy import user_key

    fields = value.decode().split(",")
    month, day, year = fields[1].split("/")
    return user_key(int(fields[0]), secret), int(f"{year}{int(month):02d}{int(day):02d}")


def _day_of(value: bytes) -> str:
    return value.decode().split(",")[1]


def _percentiles(latencies: list[float]) -> dict:
    series = pd.Series(latencies)
    return {"n": int(len(series)), "p50_s": round(float(series.quantile(0.5)), 2),
            "p95_s": round(float(series.quantile(0.95)), 2), "max_s": round(float(series.max()), 2)}


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        if needle in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()   # drain
            return
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"the streaming process did not start ({needle!r} not printed)")


def _start(args: list[str], env: dict, ready: str, root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *args], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for_line(proc, ready, 300)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure(root: Path, work: Path, month2: Path, port: int, days: int = 8, seconds_per_day: float = 12,
            settle_s: float = 90) -> dict:
    """Both figures, one after the other on one broker: the passthrough, then `make stream`. One more
    day goes first, at once, and is waited for before the paced days: it is left out of the figures."""
    import shutil

    from fitbit_lakehouse.config import load_settings
    from fitbit_lakehouse.kafka_broker import ensure_broker, ensure_topics, stop_local_broker
    from fitbit_lakehouse.privacy import user_key_secret
    from fitbit_lakehouse.produce import produce_from_settings

    lake = work / "lake_freshness"
    shutil.rmtree(lake, ignore_errors=True)
    warm_raw, raw = paced_raw(month2, lake / "raw_warm_up", 0, 1), paced_raw(month2, lake / "raw", 1, days)
    speed = 86_400 / seconds_per_day
    environ = {"FITBIT_LAKE_DIR": str(lake), "FITBIT_RAW_DIR": str(raw),
               "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}"}
    base = load_settings(environ=environ)
    secret = user_key_secret(base)
    handle = ensure_broker(base)
    env = dict(os.environ, **environ, FITBIT_LOG_LEVEL="WARNING")
    results = {"days": days, "seconds_per_day": seconds_per_day, "trigger": base.get("bronze.processing_time")}

    def warm_up(settings, visible) -> int:
        """The first day, sent at once and waited for: it pays for the first batches (JVM warm-up,
        tables created), which a running stream has long paid."""
        summary = produce_from_settings(settings.with_overrides(**{"paths.raw_dir": str(warm_raw)}), replay=True)
        _settle(visible, settle_s)
        return summary

    try:
        # 1. the passthrough: Kafka -> Delta, nothing else, the same trigger as bronze
        passthrough = base.with_overrides(**{"kafka.events_topic": "bench_freshness_passthrough"})
        ensure_topics(passthrough)
        target = lake / "passthrough"
        proc = _start(["-m", "benchmarks.freshness", "passthrough", passthrough.events_topic, str(target)],
                      env, "passthrough running", root)
        try:
            with FirstSeen(target, ["partition", "offset"]) as seen:
                warm_messages = warm_up(passthrough, lambda: len(seen.seen) > 0).messages
                _settle(lambda: len(seen.seen) >= warm_messages, settle_s)
                produce_from_settings(passthrough, speed=speed, replay=True)   # one row per message
                sent = [r for r in _sent_times(passthrough, passthrough.events_topic) if r[2] >= warm_messages]
                _settle(lambda: all((0, o) in seen.seen for _v, _t, o in sent), settle_s)
        finally:
            _stop(proc)
        first = {offset: at for (_partition, offset), at in seen.seen.items()}   # one partition locally
        results["passthrough"] = _percentiles([first[o] - t for _v, t, o in sent if o in first])

        # 2. the pipeline under `make stream`: bronze -> silver -> gold (kpi_daily_wellness)
        stream = base.with_overrides(**{"kafka.events_topic": "bench_freshness_stream"})
        env_stream = dict(env, FITBIT_SETTINGS=json.dumps({"kafka.events_topic": stream.events_topic}))
        proc = _start(["-m", "fitbit_lakehouse", "stream"], env_stream, "Ctrl-C stops", root)
        try:
            with FirstSeen(lake / "gold" / "kpi_daily_wellness", ["user_key", "date_key"]) as seen:
                warm_days = _valid_user_days(warm_raw / "dailyActivity_merged.csv", secret)
                warm_up(stream, lambda: warm_days <= set(seen.seen))
                produce_from_settings(stream, speed=speed, replay=True)
                sent_at = {}
                for value, at, _offset in _sent_times(stream, stream.events_topic):
                    key = _user_day(value, secret)
                    sent_at[key] = max(sent_at.get(key, 0), at)
                expected = _valid_user_days(raw / "dailyActivity_merged.csv", secret)
                _settle(lambda: expected <= set(seen.seen), settle_s)
        finally:
            _stop(proc)
        latencies = [seen.seen[k] - sent_at[k] for k in expected if k in seen.seen and k in sent_at]
        results["stream_kpi"] = {**_percentiles(latencies), "expected_user_days": len(expected),
                                 "seen": sum(1 for k in expected if k in seen.seen)}
        results["ratio_p95"] = round(results["stream_kpi"]["p95_s"] / results["passthrough"]["p95_s"], 2)
        results["ratio_p50"] = round(results["stream_kpi"]["p50_s"] / results["passthrough"]["p50_s"], 2)
    finally:
        if handle.started_here:
            stop_local_broker(base)
    return results


def _valid_user_days(path: Path, secret: str) -> set:
    """The user-days kpi_daily_wellness holds for this file: every day with steps (contract: >= 1)."""
    from fitbit_lakehouse.privacy import user_key

    frame = pd.read_csv(path)
    frame = frame[frame["TotalSteps"] >= 1]
    dates = pd.to_datetime(frame["ActivityDate"], format="%m/%d/%Y").dt.strftime("%Y%m%d").astype(int)
    return {(user_key(int(i), secret), int(d)) for i, d in zip(frame["Id"], dates)}


def _settle(done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def passthrough(topic: str, target: str) -> None:
    """A bare Kafka -> Delta query with bronze's trigger: the floor for a streaming step on this machine."""
    from fitbit_lakehouse.config import load_settings
    from fitbit_lakehouse.kafka_broker import spark_options
    from fitbit_lakehouse.spark import get_spark

    settings = load_settings()
    spark = get_spark(settings, app_name="freshness-passthrough")
    source = (spark.readStream.format("kafka").options(**spark_options(settings))
              .option("kafka.bootstrap.servers", settings.bootstrap_servers).option("subscribe", topic)
              .option("startingOffsets", "earliest").load())
    query = (source.select("partition", "offset", "timestamp", "value").writeStream.format("delta")
             .option("checkpointLocation", f"{target}/_checkpoint")
             .trigger(processingTime=settings.get("bronze.processing_time")).start(target))
    print("passthrough running", flush=True)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        query.stop()


if __name__ == "__main__":
    if sys.argv[1] == "passthrough":
        passthrough(sys.argv[2], sys.argv[3])
