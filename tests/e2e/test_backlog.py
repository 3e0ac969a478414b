"""Under `make stream`'s settings, a backlog of one-record messages (what a paced replay or a live feed
sends) is taken in micro-batches bounded by what they hold, not by how many messages or bronze files
carry it: with the batch steps' bounds (1,000 messages per bronze trigger, 6 bronze files per silver
batch) a 10-user replay got about 100 records a second through, and the stream fell further behind for
as long as it ran. The steps run here with availableNow, which takes the same bounds per micro-batch.

Real broker, Spark and Delta; the record counts come from the CSV.
"""
from __future__ import annotations

import shutil

import pytest

from fitbit_lakehouse import pipeline
from tests.conftest import MONTH2_SLICE

pytestmark = pytest.mark.e2e

FILES = ("hourlySteps_merged.csv", "hourlyCalories_merged.csv", "hourlyIntensities_merged.csv")


def _rows(path) -> int:
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def _live_files(table) -> tuple[list[int], list[int]]:
    """Records and bytes of each live file of a Delta table (from its add actions)."""
    from deltalake import DeltaTable

    actions = DeltaTable(str(table)).get_add_actions(flatten=True)
    return ([int(n) for n in actions.column("num_records").to_pylist()],
            [int(n) for n in actions.column("size_bytes").to_pylist()])


def _silver_batches(lake) -> list[int]:
    """Records in of each silver micro-batch, from the ingest log."""
    from deltalake import DeltaTable

    log = DeltaTable(str(lake / "silver" / "_ingest_log")).to_pandas()
    return log[log["table"] == "*"].sort_values("batch_id")["records_in"].tolist()


def test_a_backlog_of_one_record_messages_is_taken_by_bytes_not_by_messages_or_files(
        base_settings, broker, spark, test_root):
    raw = test_root / "backlog_raw"
    raw.mkdir()
    for name in FILES:
        shutil.copy(MONTH2_SLICE / name, raw / name)
    records = sum(_rows(raw / name) for name in FILES)
    per_file = records // 12 + 1   # a dozen small bronze files, as a stream's triggers leave them
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / "backlog"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_backlog",
        "kafka.alerts_topic": "e2e_backlog_alerts", "producer.records_per_message": 1,
        "bronze.max_records_per_file": per_file})
    settings = settings.with_overrides(**settings.get("stream.settings"))   # the bounds of `make stream`
    assert pipeline.produce_step(settings)["messages"] == records > 1000   # more than the former bound

    # bronze: every message in one micro-batch, written in files of at most max_records_per_file
    assert pipeline.bronze_step(settings)["batches"] == 1
    bronze = settings.lake_dir / "bronze" / "events"
    files, sizes = _live_files(bronze)
    assert sum(files) == records and len(files) >= 12 and max(files) <= per_file

    # silver: those small files are far below max_bytes_per_trigger, so one micro-batch takes them all
    pipeline.silver_step(settings)
    assert _silver_batches(settings.lake_dir) == [records]

    # and the bytes bound holds where it binds: a third of bronze's bytes per micro-batch
    bounded = settings.with_overrides(**{"paths.lake_dir": str(test_root / "backlog_bounded"),
                                         "silver.max_bytes_per_trigger": str(sum(sizes) // 3)})
    shutil.copytree(bronze, bounded.lake_dir / "bronze" / "events")
    pipeline.silver_step(bounded)
    batches = _silver_batches(bounded.lake_dir)
    assert sum(batches) == records and 3 <= len(batches) <= 4
