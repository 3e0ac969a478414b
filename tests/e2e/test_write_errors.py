"""A disk that fills under a step: one line that says so (not a stage failure inside a streaming query's
error), and once there is space again the next run goes on from what was committed, nothing lost and
nothing twice. A lake on a read-only file system: one line, before anything starts. On real file
systems: a small tmpfs (mounting one needs root; elsewhere these tests are skipped).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from tests.conftest import MONTH2_SLICE, cli_said

pytestmark = pytest.mark.e2e

FILES = ("dailyActivity_merged.csv", "hourlySteps_merged.csv", "minuteStepsNarrow_merged.csv")


def _mounted(mount_point: Path, options: str):
    """A tmpfs mounted at mount_point for the test (skipped where that is not allowed)."""
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB file system of its own."""
    yield from _mounted(tmp_path / "small_disk", "size=16m")


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only file system of its own."""
    yield from _mounted(tmp_path / "read_only", "ro,size=1m")


def test_a_lake_on_a_read_only_file_system_is_one_line_before_anything_starts(read_only_disk, tmp_path):
    from fitbit_lakehouse.kafka_broker import free_port, port_open

    port = free_port()
    env = dict(os.environ, FITBIT_LAKE_DIR=str(read_only_disk / "lake"), FITBIT_RAW_DIR=str(tmp_path),
               KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}")
    for command in (["run"], ["produce"], ["steps", "bronze,silver"]):
        cli = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", *command], env=env, capture_output=True,
                             text=True, timeout=300)
        said = cli_said(cli.stderr)
        assert cli.returncode == 2 and len(said) == 1, cli.stderr
        assert said[0].endswith(f"cannot write {read_only_disk / 'lake'} (Read-only file system): give this user "
                                "the right to write there, or point FITBIT_LAKE_DIR at a folder it can write"), said
        assert not port_open("127.0.0.1", port), "a broker was started for a lake it cannot write"


class Ballast:
    """A file that takes a disk's free space, but for `leave` bytes."""

    def __init__(self, disk: Path):
        self.path = disk / "ballast"

    def fill(self, leave: int = 0) -> None:
        free = shutil.disk_usage(self.path.parent).free + (self.path.stat().st_size if self.path.exists() else 0)
        with open(self.path, "wb") as ballast:
            ballast.write(b"\0" * max(0, free - leave))   # written, not sparse: tmpfs counts what is written

    def remove(self) -> None:
        self.path.unlink()


def test_a_full_disk_stops_a_step_in_one_line_and_the_next_run_loses_nothing(base_settings, broker, spark,
                                                                              small_disk, tmp_path):
    from fitbit_lakehouse.tables import Lake

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = 0
    for name in FILES:
        shutil.copy(MONTH2_SLICE / name, raw / name)
        rows += sum(1 for line in (raw / name).read_text().splitlines()[1:] if line.strip())
    overrides = {"kafka.events_topic": "e2e_disk_full", "kafka.alerts_topic": "e2e_disk_full_alerts",
                 "bronze.max_offsets_per_trigger": 40}   # several bronze commits
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(small_disk / "lake"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "producer.records_per_message": 5, **overrides})
    pipeline.produce_step(settings)
    ballast = Ballast(small_disk)

    # bronze: the CLI says it in one line (no room at all: not even for the step's lock file)
    ballast.fill()
    env = dict(os.environ, FITBIT_LAKE_DIR=str(settings.lake_dir), KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
               FITBIT_SETTINGS=json.dumps({**overrides, "spark.shuffle_partitions": 2}))
    cli = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "bronze"], env=env, capture_output=True,
                         text=True, timeout=300)
    said = cli_said(cli.stderr)
    assert cli.returncode == 2 and len(said) == 1, cli.stderr
    assert said[0].startswith(f"error: bronze stopped: no space left on the disk of the lake {settings.lake_dir}. "
                              "Free space there"), said[0]
    # ... and in this process, where the disk fills after bronze's first micro-batch
    ballast.fill(leave=120_000)
    with pytest.raises(pipeline.DiskFull, match=r"^bronze stopped: no space left on the disk"):
        pipeline.bronze_step(settings)
    ballast.remove()
    pipeline.bronze_step(settings)
    lake = Lake(spark, settings)
    landed = lake.read("bronze", "events").select("source_file", "row_number").toPandas()
    assert len(landed) == rows and not landed.duplicated().any(), "bronze lost or doubled CSV rows"

    # silver: the disk fills while it writes (a little room: its first writes fit)
    ballast.fill(leave=200_000)
    with pytest.raises(pipeline.DiskFull, match=r"^silver stopped: no space left on the disk"):
        pipeline.silver_step(settings)
    ballast.remove()
    reconciliation = {r["table"]: r for r in pipeline.silver_step(settings)}   # raises if it does not add up
    seen = reconciliation["bronze/events"]   # bronze's records, and those silver's batches took in
    assert seen["records_in"] == seen["silver_rows"] == rows
    for name, table in zip(FILES, ("daily_activity", "hourly_steps", "minute_steps")):
        keys = pd.read_csv(raw / name, usecols=[0, 1], dtype=str)   # Id and the day, hour or minute
        assert lake.count("silver", table) == len(keys.drop_duplicates()), table
