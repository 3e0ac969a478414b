"""`make vacuum` on tables written with delta-rs (no Spark): what it deletes, what it keeps and why.
The files expected gone are found from the tables' own logs and the disk, not from the vacuum."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse.alerts import published_version_file
from fitbit_lakehouse.gold import silver_versions_file
from fitbit_lakehouse.maintenance import VacuumRefused, unread_commits, vacuum_lake
from fitbit_lakehouse.pipeline import LakeBusy, writing
from tests.delta_files import data_files, live_files, table_rows


def _table(lake: Path, name: str, versions: int) -> Path:
    """A table overwritten `versions` times: every version but the last leaves its file behind."""
    from deltalake import write_deltalake

    path = lake / name
    for v in range(versions):
        write_deltalake(str(path), pd.DataFrame({"k": [v, v + 1], "x": [f"v{v}", "y"]}), mode="overwrite")
    return path


@pytest.fixture
def settings(base_settings, tmp_path):
    return base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path)})


def test_only_files_no_version_within_the_retention_uses_are_deleted(settings):
    lake = settings.lake_dir
    table = _table(lake, "silver/daily_activity", 3)
    # a write killed before its commit leaves a file no commit names, and Hadoop's checksum beside it
    orphan = table / "part-99999-killed-write.snappy.parquet"
    orphan.write_bytes((table / sorted(live_files(table))[0]).read_bytes())
    (table / f".{orphan.name}.crc").write_bytes(b"crc")
    stale = data_files(table) - live_files(table)
    assert len(stale) == 3   # two replaced files and the orphan
    rows, stale_bytes = table_rows(table), sum((table / f).stat().st_size for f in stale)

    for force in (True, False):   # a dry run deletes nothing: it needs no --force to look under the retention
        planned = vacuum_lake(settings, retain_hours=0, dry_run=True, force=force)
        assert [(r.table, r.files) for r in planned] == [("silver/daily_activity", 3)]
        assert data_files(table) - live_files(table) == stale

    done = vacuum_lake(settings, retain_hours=0, force=True)
    assert (done[0].files, done[0].bytes) == (3, stale_bytes)
    assert data_files(table) == live_files(table) and table_rows(table) == rows
    assert not (table / f".{orphan.name}.crc").exists()


def test_the_default_retention_keeps_files_replaced_just_now(settings):
    table = _table(settings.lake_dir, "gold/dim_user", 3)
    before = data_files(table)
    (result,) = vacuum_lake(settings)   # maintenance.vacuum_retain_hours: Delta's 7 days
    assert result.files == 0 and data_files(table) == before


def test_a_retention_under_the_tables_own_needs_force(settings):
    _table(settings.lake_dir, "gold/dim_user", 2)
    with pytest.raises(VacuumRefused, match="--force"):
        vacuum_lake(settings, retain_hours=1)


def test_force_waits_for_no_running_step(settings):
    _table(settings.lake_dir, "gold/dim_user", 2)
    with writing(settings, "silver"), pytest.raises(LakeBusy, match="silver"):
        vacuum_lake(settings, retain_hours=0, force=True)


def _checkpoint(query: Path, offsets: dict[int, dict], committed: list[int]) -> None:
    for batch, source in offsets.items():
        (query / "offsets").mkdir(parents=True, exist_ok=True)
        (query / "offsets" / str(batch)).write_text("v1\n{\"batchWatermarkMs\":0}\n" + json.dumps(source) + "\n")
    for batch in committed:
        (query / "commits").mkdir(parents=True, exist_ok=True)
        (query / "commits" / str(batch)).write_text("v1\n{}\n")


def test_readers_behind_are_found_in_gold_alerts_and_stream_checkpoints(settings):
    from deltalake import DeltaTable

    lake, checkpoints = settings.lake_dir, settings.checkpoints_dir
    bronze = _table(lake, "bronze/events", 4)
    _table(lake, "silver/daily_activity", 4)
    _table(lake, "gold/goal_alerts", 2)
    for note in (silver_versions_file(settings), published_version_file(settings)):
        note.parent.mkdir(parents=True)
    silver_versions_file(settings).write_text(json.dumps({"daily_activity": 1, "sleep_day": 0}))
    published_version_file(settings).write_text(json.dumps({"version": 0}))
    source = DeltaTable(str(bronze)).metadata().id
    # silver's query committed batch 0 (bronze read up to version 2) and planned batch 1 (up to 3)
    _checkpoint(checkpoints / "silver" / "silver_tables",
                {0: {"reservoirId": source, "reservoirVersion": 2, "index": -1, "isStartingVersion": False},
                 1: {"reservoirId": source, "reservoirVersion": 3, "index": -1, "isStartingVersion": False}}, [0])
    _checkpoint(checkpoints / "bronze" / "events", {0: {"fitbit_wellness_stream": {"0": 5}}}, [0])   # Kafka: not a table
    # make stream's gold trigger of an earlier version, left behind by batch runs: its query starts at the
    # ingest log's current version now, so it holds nothing back (make vacuum kept the log for it for good)
    ingest_log = DeltaTable(str(_table(lake, "silver/_ingest_log", 4))).metadata().id
    _checkpoint(checkpoints / "gold" / settings.get("gold.query_name"),
                {0: {"reservoirId": ingest_log, "reservoirVersion": 1, "index": -1, "isStartingVersion": False}}, [0])

    unread = {table: u.version for table, u in unread_commits(settings).items()}
    assert unread == {"silver/daily_activity": 2, "silver/sleep_day": 1, "gold/goal_alerts": 1, "bronze/events": 2}


def test_a_table_whose_reader_is_behind_past_the_retention_is_kept(settings):
    lake = settings.lake_dir
    table = _table(lake, "silver/daily_activity", 3)
    state = silver_versions_file(settings)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"daily_activity": 0}))   # gold read version 0, not 1 and 2
    before = data_files(table)

    (kept,) = vacuum_lake(settings, retain_hours=0, force=True)
    assert kept.files == 0 and "gold" in kept.kept_because and data_files(table) == before

    state.write_text(json.dumps({"daily_activity": 2}))   # gold caught up
    (done,) = vacuum_lake(settings, retain_hours=0, force=True)
    assert done.files == 2 and not done.kept_because and data_files(table) == live_files(table)


# --- make clean-lake -------------------------------------------------------------------------------

def test_clean_lake_deletes_what_runs_wrote_under_the_configured_lake_and_keeps_the_raw_csvs(base_settings, tmp_path):
    from fitbit_lakehouse.maintenance import clean_lake

    lake = tmp_path / "elsewhere"
    settings = base_settings.with_overrides(**{"paths.lake_dir": str(lake), "paths.raw_dir": str(lake / "raw"),
                                               "mlflow.tracking_uri": ""})
    written = ["bronze/events/_delta_log/0.json", "silver/x/part-0.parquet", "gold/y/part-0.parquet",
               "checkpoints/bronze/offsets/0", "_producer/ledger.json", "_secrets/user_key_secret",
               "kafka/meta.properties", "reports/report.html", "_synthetic/a.csv", "_spark_tmp/x",
               "mlflow.db", "mlflow-artifacts/1/x", "_locks/bronze.lock", "_warehouse/x", "_derby/x"]
    kept = ["raw/dailyActivity_merged.csv", "notes.txt", "README.md"]
    for relative in written + kept:
        (lake / relative).parent.mkdir(parents=True, exist_ok=True)
        (lake / relative).write_text("x")

    clean_lake(settings)
    assert sorted(p.name for p in lake.iterdir()) == sorted({k.split("/")[0] for k in kept})
    assert all((lake / k).read_text() == "x" for k in kept)

    # the secret's fingerprint goes too, also where the lake keeps no generated secret (a workspace's conf)
    no_secret_file = settings.with_overrides(**{"privacy.fingerprint_file": "_keys/fingerprint"})
    no_secret_file.raw["privacy"]["lake_secret_file"] = ""
    (lake / "_keys").mkdir()
    (lake / "_keys" / "fingerprint").write_text("x")
    clean_lake(no_secret_file)
    assert sorted(p.name for p in lake.iterdir()) == sorted({k.split("/")[0] for k in kept})


def test_clean_lake_is_refused_while_a_step_writes_the_lake(settings, tmp_path):
    from fitbit_lakehouse.maintenance import clean_lake

    (tmp_path / "silver" / "x").mkdir(parents=True)
    with writing(settings, "silver"), pytest.raises(LakeBusy, match="silver"):
        clean_lake(settings)
    assert (tmp_path / "silver" / "x").is_dir()
