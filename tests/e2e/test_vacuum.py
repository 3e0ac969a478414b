"""`make vacuum` on a lake the pipeline wrote (real broker, Spark and Delta, change data feed and all):
it deletes the files that no table version uses and nothing else, leaves a table alone while gold has
commits of it to read that the vacuum would break, and the pipeline goes on after it; gold rebuilds
from silver when a vacuum outside the project took change data it had not read.

Expected files come from the tables' logs and the disk; expected figures from the CSV rows sent.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.privacy import user_key, user_key_secret
from tests.conftest import MONTH2_SLICE
from tests.delta_files import data_files, live_files, table_rows

pytestmark = pytest.mark.e2e

DAILY = "dailyActivity_merged.csv"


def _write(path: Path, header: list[str], rows: pd.DataFrame, append: bool = True) -> None:
    with open(path, "a" if append else "w", newline="") as handle:
        if not append:
            handle.write(",".join(header) + "\r\n")
        handle.write("".join(",".join(r) + "\r\n" for r in rows.itertuples(index=False)))


def _later_sync(rows: pd.DataFrame) -> pd.DataFrame:
    """The same user-days synced again later, with more steps: they win (the merge rules)."""
    more = rows.copy()
    more["TotalSteps"] = (more["TotalSteps"].astype(int) + 500).astype(str)
    return more


def _tables(lake: Path) -> list[Path]:
    return sorted(p.parent for p in lake.glob("*/*/_delta_log"))


def _vacuum(lake: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FITBIT_LAKE_DIR=str(lake))
    out = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "vacuum", "--retain-hours", "0", "--force"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _user_days(rows: pd.DataFrame) -> set:
    return set(zip(rows["Id"], rows["ActivityDate"]))


def _kpi_steps(lake: Path) -> dict:
    from deltalake import DeltaTable

    frame = DeltaTable(str(lake / "gold" / "kpi_daily_wellness")).to_pandas(columns=["user_key", "date_key", "total_steps"])
    return {(u, int(d)): int(s) for u, d, s in frame.itertuples(index=False, name=None)}


def _expected_kpi_steps(sent: pd.DataFrame, secret: str, min_steps: int) -> dict:
    """Per user-day the summary with the most steps (the merge rules), valid days only."""
    steps = sent.assign(steps=sent["TotalSteps"].astype(int)).groupby(["Id", "ActivityDate"])["steps"].max()
    return {(user_key(int(i), secret), int(pd.to_datetime(d, format="%m/%d/%Y").strftime("%Y%m%d"))): int(s)
            for (i, d), s in steps.items() if s >= min_steps}


def test_vacuum_deletes_only_unused_files_keeps_what_gold_has_not_read_and_the_pipeline_goes_on(
        base_settings, broker, spark, test_root, caplog):
    source = pd.read_csv(MONTH2_SLICE / DAILY, dtype=str, keep_default_na=False)
    days = sorted(set(source["ActivityDate"]), key=lambda d: pd.to_datetime(d, format="%m/%d/%Y"))
    day = {i: source[source["ActivityDate"] == days[i]] for i in range(4)}
    raw, lake = test_root / "vacuum_raw", test_root / "vacuum_lake"
    raw.mkdir()
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(lake), "kafka.bootstrap_servers": broker.bootstrap_servers,
        "kafka.events_topic": "e2e_vacuum", "kafka.alerts_topic": "e2e_vacuum_alerts"})
    secret, min_steps = user_key_secret(settings), int(settings.get("kpi.valid_day_min_steps"))
    sent = []

    def deliver(rows: pd.DataFrame, *steps: str) -> None:
        _write(raw / DAILY, list(source.columns), rows, append=bool(sent))
        sent.append(rows)
        for step in steps:
            getattr(pipeline, f"{step}_step")(settings)

    deliver(pd.concat([day[0], day[1]]), "produce", "bronze", "silver", "gold")
    # a later sync of day 1 and a new day reach silver, which rewrites the file that held day 1 and
    # writes the change data of that MERGE; gold has not run, and its next read of silver's change feed
    # needs that change data
    deliver(pd.concat([_later_sync(day[0]), day[2]]), "produce", "bronze", "silver")
    silver = lake / "silver" / "daily_activity"
    replaced = data_files(silver) - live_files(silver)
    assert any(f.startswith("_change_data/") for f in replaced)

    out = _vacuum(lake)
    assert "kept silver/daily_activity: gold has not read" in out.stdout, out.stdout
    assert data_files(silver) - live_files(silver) == replaced
    gold = pipeline.gold_step(settings)   # reads the change feed of those commits
    assert gold["user_days"] == len(_user_days(sent[-1]))   # only the user-days those commits changed
    assert _kpi_steps(lake) == _expected_kpi_steps(pd.concat(sent), secret, min_steps)

    # now nothing is behind: every file no version uses goes, every row stays
    tables = _tables(lake)
    unused = {t: data_files(t) - live_files(t) for t in tables}
    rows = {t: table_rows(t) for t in tables}
    assert unused[silver] and unused[lake / "gold" / "kpi_daily_wellness"]
    out = _vacuum(lake)
    assert f"deleted {sum(map(len, unused.values())):,} files" in out.stdout, out.stdout
    for table in tables:
        assert data_files(table) == live_files(table), table
        assert table_rows(table) == rows[table], table

    # the pipeline goes on on the vacuumed lake; and when a VACUUM outside the project's reach (Databricks'
    # predictive optimisation, one by hand) takes change data gold had not read, gold rebuilds from silver
    deliver(pd.concat([_later_sync(day[2]), day[3]]), "produce", "bronze", "silver")
    from deltalake import DeltaTable

    DeltaTable(str(silver)).vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    assert not list((silver / "_change_data").glob("*.parquet"))   # (Spark's VACUUM does the same, in 29 s)
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.gold"):
        gold = pipeline.gold_step(settings)
    assert gold["user_days"] == len(_user_days(pd.concat(sent)))   # every user-day silver holds
    assert any("change feed" in r.getMessage() and "rebuilding gold" in r.getMessage() for r in caplog.records)
    assert _kpi_steps(lake) == _expected_kpi_steps(pd.concat(sent), secret, min_steps)
