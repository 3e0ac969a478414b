"""`make stream` keeps gold current: `python -m fitbit_lakehouse stream` runs bronze, silver and gold as
continuous queries against the real broker; rows produced while it runs reach kpi_daily_wellness
without anyone running 04_gold, and a day produced later shows up the same way.

Expected user-days and figures come straight from the CSV rows sent (pandas), not from the pipeline.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse.privacy import user_key
from fitbit_lakehouse.produce import produce_from_settings
from tests.conftest import MONTH2_SLICE

pytestmark = pytest.mark.e2e

SECRET = "stream-test-secret"
DAILY = "dailyActivity_merged.csv"


def _expected_kpi(rows: pd.DataFrame, min_steps: int) -> dict:
    """(user_key, date_key) -> total_steps of every valid day in these CSV rows."""
    valid = rows[rows["TotalSteps"].astype(int) >= min_steps]
    dates = pd.to_datetime(valid["ActivityDate"], format="%m/%d/%Y").dt.strftime("%Y%m%d").astype(int)
    return {(user_key(int(i), SECRET), int(d)): int(s) for i, d, s in zip(valid["Id"], dates, valid["TotalSteps"])}


def _kpi(lake: Path) -> dict:
    from deltalake import DeltaTable

    path = lake / "gold" / "kpi_daily_wellness"
    try:
        frame = DeltaTable(str(path)).to_pandas(columns=["user_key", "date_key", "total_steps"])
    except Exception:   # noqa: BLE001 - not created yet
        return {}
    return {(u, int(d)): int(s) for u, d, s in frame.itertuples(index=False, name=None)}


def _wait_until(condition, timeout_s: float, what: str, proc: subprocess.Popen, output: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"make stream exited ({proc.returncode}):\n" + "".join(output[-40:])
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s:\n" + "".join(output[-40:])
        time.sleep(1)


def _write(path: Path, header: list[str], rows: pd.DataFrame, append: bool) -> None:
    with open(path, "a" if append else "w", newline="") as handle:
        if not append:
            handle.write(",".join(header) + "\r\n")
        handle.write("".join(",".join(r) + "\r\n" for r in rows.itertuples(index=False)))


def test_gold_follows_the_stream_and_a_later_day_shows_up(base_settings, broker, tmp_path, monkeypatch):
    source = pd.read_csv(MONTH2_SLICE / DAILY, dtype=str, keep_default_na=False)
    dates = sorted(set(source["ActivityDate"]), key=lambda d: pd.to_datetime(d, format="%m/%d/%Y"))
    first_days, later_day = source[source["ActivityDate"].isin(dates[:2])], source[source["ActivityDate"] == dates[2]]
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    _write(raw / DAILY, list(source.columns), first_days, append=False)

    # Delta's auto compaction after two small files instead of 50: the stream's own tables compacted
    # while it runs, as a long `make stream` does
    compact_early = {**base_settings.get("stream.delta_conf"), "spark.databricks.delta.autoCompact.minNumFiles": 2}
    overrides = {"kafka.events_topic": "e2e_stream_events", "kafka.alerts_topic": "e2e_stream_alerts",
                 "bronze.processing_time": "2 seconds", "silver.processing_time": "2 seconds",
                 "gold.processing_time": "2 seconds", "spark.shuffle_partitions": 2, "stream.delta_conf": compact_early,
                 "stream.status_every_s": 3}
    settings = base_settings.with_overrides(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(lake),
                                               "kafka.bootstrap_servers": broker.bootstrap_servers, **overrides})
    env = dict(os.environ, FITBIT_LAKE_DIR=str(lake), FITBIT_RAW_DIR=str(raw), FITBIT_USER_KEY_SECRET=SECRET,
               KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, FITBIT_SETTINGS=json.dumps(overrides))
    proc, output = _start_stream(env)
    min_steps = int(settings.get("kpi.valid_day_min_steps"))
    try:
        _wait_until(lambda: any("Ctrl-C stops" in line for line in output), 180, "the queries start", proc, output)
        monkeypatch.setenv("FITBIT_USER_KEY_SECRET", SECRET)   # the producer keys messages with it too
        produce_from_settings(settings)
        expected = _expected_kpi(first_days, min_steps)
        _wait_until(lambda: _kpi(lake) == expected, 300, "the first days in kpi_daily_wellness", proc, output)

        # a day produced while the queries run: only its rows are sent (the ledger), gold follows
        _write(raw / DAILY, list(source.columns), later_day, append=True)
        summary = produce_from_settings(settings)
        assert summary.rows == len(later_day)
        expected = _expected_kpi(pd.concat([first_days, later_day]), min_steps)
        _wait_until(lambda: _kpi(lake) == expected, 300, "the later day in kpi_daily_wellness", proc, output)
        # the status lines account for every record silver took, and end with nothing waiting
        sent = len(first_days) + len(later_day)
        _wait_until(lambda: _silver_taken(output) == sent and _waiting(output) == "0 messages in Kafka, 0 commits for "
                    "silver, 0 commits for gold", 30, "status lines that count every record",
                    proc, output)
    finally:
        code = _stop(proc)
    assert code == 0, "".join(output)   # it stopped by itself, as a stream asked to stop does
    assert not (lake / "reports" / "gold.json").exists(), "04_gold's step ran: gold must come from the stream"
    # a normal run and its stop print no Spark log lines, errors or tracebacks (the JVM launcher's one
    # warning aside): the queries stop between micro-batches
    assert any(line.startswith("Stopping:") for line in output), "".join(output)
    noise = [line for line in output if any(mark in line for mark in (
        "Setting default log level", "sc.setLogLevel", " ERROR ", "Traceback", "Exception"))
        or line.startswith("\tat ")]
    assert not noise, "".join(output)
    _assert_compacted_and_counted_once(lake, sent=len(first_days) + len(later_day),
                                       keys=len(pd.concat([first_days, later_day])[["Id", "ActivityDate"]].drop_duplicates()))

    # started again with another steps goal and nothing new: gold is rebuilt with it at the start (it
    # waited for the next record), and no checkpoint in the lake lags behind for make vacuum to keep
    goal = 8000
    proc, output = _start_stream({**env, "FITBIT_SETTINGS": json.dumps({**overrides, "kpi.activity.steps_goal": goal})})
    try:
        _wait_until(lambda: any("Ctrl-C stops" in line for line in output), 180, "the queries start", proc, output)
        expected = _expected_activity(pd.concat([first_days, later_day]), min_steps, goal)
        assert _activity(lake) == expected   # before the queries started
        assert any("built with other KPI settings" in line for line in output), "".join(output)
    finally:
        assert _stop(proc) == 0, "".join(output)
    assert not (lake / "checkpoints" / "gold").joinpath(settings.get("gold.query_name")).exists()


def _start_stream(env: dict) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", "stream"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, output


def _stop(proc: subprocess.Popen) -> int | str:
    """SIGTERM to the whole process group, as `timeout` or systemd send it (Ctrl-C in a terminal is
    SIGINT to the group): the stream still stops between micro-batches, its Spark JVM untouched."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "still running 60 s after SIGTERM"


def _expected_activity(rows: pd.DataFrame, min_steps: int, steps_goal: int) -> dict:
    """(user_key, date_key) -> activity_score by CONTRACT's formula, the steps goal given."""
    valid = rows[rows["TotalSteps"].astype(int) >= min_steps]
    dates = pd.to_datetime(valid["ActivityDate"], format="%m/%d/%Y").dt.strftime("%Y%m%d").astype(int)
    mvpa = valid["VeryActiveMinutes"].astype(float) + valid["FairlyActiveMinutes"].astype(float)
    score = (0.5 * (valid["TotalSteps"].astype(float) / steps_goal).clip(upper=1) + 0.5 * (mvpa / 30).clip(upper=1))
    return {(user_key(int(i), SECRET), int(d)): round(float(a), 9) for i, d, a in zip(valid["Id"], dates, score)}


def _activity(lake: Path) -> dict:
    from deltalake import DeltaTable

    frame = DeltaTable(str(lake / "gold" / "kpi_daily_wellness")).to_pandas(columns=["user_key", "date_key",
                                                                                    "activity_score"])
    return {(u, int(d)): round(float(a), 9) for u, d, a in frame.itertuples(index=False, name=None)}


def _silver_taken(output: list[str]) -> int:
    """Records silver took, summed over the stream's status lines."""
    return sum(int(m.group(1).replace(",", "")) for line in output
               if (m := re.search(r", silver ([\d,]+) records in", line)))


def _waiting(output: list[str]) -> str | None:
    """What the last status line says still waits."""
    lines = [line for line in output if line.startswith("stream: ")]
    return lines[-1].rstrip("\n").split("; waiting: ")[1] if lines else None


def _assert_compacted_and_counted_once(lake: Path, sent: int, keys: int) -> None:
    """The stream's tables were compacted while it ran, and nothing was read or counted twice: silver
    read each bronze record once (a compaction's rewritten files are not new records), and the
    ingest log's inserts are the rows silver holds."""
    from deltalake import DeltaTable

    def operations(layer: str, table: str) -> list[str]:
        return [c["operation"] for c in DeltaTable(str(lake / layer / table)).history()]

    assert "OPTIMIZE" in operations("bronze", "events") and "OPTIMIZE" in operations("silver", "daily_activity")
    log = DeltaTable(str(lake / "silver" / "_ingest_log")).to_pandas()
    assert log.loc[log["table"] == "*", "records_in"].sum() == sent
    silver = DeltaTable(str(lake / "silver" / "daily_activity")).to_pandas()
    assert log.loc[log["table"] == "daily_activity", "inserted"].sum() == len(silver) == keys
