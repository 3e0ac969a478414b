"""Every Fitbit file kind through the real broker, bronze and silver.

Sources: the committed slice of the real month-2 files (tests/fixtures/month2_slice: every kind
../shared has, a few hundred rows each; the full month is the month-2 test's job) plus, for what it
lacks, synthetic files: month 1 (overlap on 4/12, DST-gap hour) and month 2 with one dirty row per
validation rule. The expected silver keys and values are computed here with pandas
from those CSVs; quarantine must hold exactly the injected dirty rows, nothing from the real files.
"""
from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.synthetic import generate
from tests.conftest import MONTH2_SLICE

pytestmark = pytest.mark.e2e

TS = "%m/%d/%Y %I:%M:%S %p"
DAY = "%m/%d/%Y"

# file stem -> (silver table, time column, its format, value column or wide prefix)
SPEC = {
    "dailyActivity": ("daily_activity", "ActivityDate", DAY, "TotalSteps"),
    "dailyCalories": ("daily_calories", "ActivityDay", DAY, "Calories"),
    "dailyIntensities": ("daily_intensities", "ActivityDay", DAY, "SedentaryMinutes"),
    "dailySteps": ("daily_steps", "ActivityDay", DAY, "StepTotal"),
    "sleepDay": ("sleep_day", "SleepDay", TS, "TotalMinutesAsleep"),
    "hourlySteps": ("hourly_steps", "ActivityHour", TS, "StepTotal"),
    "hourlyCalories": ("hourly_calories", "ActivityHour", TS, "Calories"),
    "hourlyIntensities": ("hourly_intensities", "ActivityHour", TS, "TotalIntensity"),
    "minuteStepsNarrow": ("minute_steps", "ActivityMinute", TS, "Steps"),
    "minuteCaloriesNarrow": ("minute_calories", "ActivityMinute", TS, "Calories"),
    "minuteIntensitiesNarrow": ("minute_intensities", "ActivityMinute", TS, "Intensity"),
    "minuteMETsNarrow": ("minute_mets", "ActivityMinute", TS, "METs"),
    "minuteStepsWide": ("minute_steps", "ActivityHour", TS, "Steps*"),
    "minuteCaloriesWide": ("minute_calories", "ActivityHour", TS, "Calories*"),
    "minuteIntensitiesWide": ("minute_intensities", "ActivityHour", TS, "Intensity*"),
    "minuteSleep": ("minute_sleep", "date", TS, "value"),
    "heartrate_seconds": ("heart_rate", "Time", TS, "Value"),
    "weightLogInfo": ("weight_log", "Date", TS, "WeightKg"),
}
SILVER_TIME = {"daily_activity": "activity_date", "daily_calories": "activity_date",
               "daily_intensities": "activity_date", "daily_steps": "activity_date", "sleep_day": "sleep_day",
               "hourly_steps": "activity_hour", "hourly_calories": "activity_hour",
               "hourly_intensities": "activity_hour", "minute_steps": "activity_minute",
               "minute_calories": "activity_minute", "minute_intensities": "activity_minute",
               "minute_mets": "activity_minute", "minute_sleep": "sleep_minute", "heart_rate": "time"}


@pytest.fixture(scope="module")
def raw(test_root):
    root = test_root / "all_kinds_raw"
    synth = test_root / "all_kinds_synth"
    generate(synth, users=3, days=6, seed=11, heart_rate_users=2, dirty_rows=True)
    shutil.copytree(MONTH2_SLICE, root / "Fitabase Data 4.12.16-5.12.16")
    shutil.copytree(synth / "Fitabase Data 3.12.16-4.11.16", root / "Fitabase Data 3.12.16-4.11.16")
    # synthetic month 2 (every kind, dirty rows) as a second month-2 folder
    shutil.copytree(synth / "Fitabase Data 4.12.16-5.12.16", root / "Fitabase Data 4.12.16-5.12.16 synthetic")
    dirty = json.loads((synth / "_dirty_rows.json").read_text())
    for entry in dirty:
        entry["file"] = entry["file"].replace("Fitabase Data 4.12.16-5.12.16", "Fitabase Data 4.12.16-5.12.16 synthetic")
    return root, dirty


@pytest.fixture(scope="module")
def run(raw, base_settings, broker, test_root, spark):
    root, dirty = raw
    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(root), "paths.lake_dir": str(test_root / "all_kinds"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_all_kinds",
        "kafka.alerts_topic": "e2e_all_kinds_alerts"})
    produced = pipeline.produce_step(settings)
    pipeline.bronze_step(settings)
    report = pipeline.silver_step(settings)
    pipeline.gold_step(settings)
    from fitbit_lakehouse.tables import Lake

    return {"settings": settings, "produced": produced, "report": report, "lake": Lake(spark, settings),
            "root": root, "dirty": dirty}


def _expected(root, dirty) -> dict[str, pd.DataFrame]:
    """Per silver table: (fitbit_id, time, value) of every valid source record, in file order."""
    bad = {(d["file"], d["row"]) for d in dirty}
    per_table: dict[str, list[pd.DataFrame]] = {}
    files = sorted(root.rglob("*.csv"), key=lambda p: ("3.12.16" not in str(p.parent), str(p)))
    for order, path in enumerate(files):
        stem = path.name.replace("_merged.csv", "")
        table, time_col, fmt, value = SPEC[stem]
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        df["row"] = range(1, len(df) + 1)
        rel = str(path.relative_to(root))
        df = df[[(rel, r) not in bad for r in df["row"]]]
        when = pd.to_datetime(df[time_col], format=fmt)
        if value.endswith("*"):   # wide: melt 60 minute columns
            prefix = value[:-1]
            parts = []
            for minute in range(60):
                parts.append(pd.DataFrame({"fitbit_id": df["Id"].astype("int64").values,
                                           "time": (when + timedelta(minutes=minute)).values,
                                           "value": pd.to_numeric(df[f"{prefix}{minute:02d}"]).values,
                                           "order": order, "row": df["row"].values * 100 + minute}))
            frame = pd.concat(parts)
        else:
            key_time = df["LogId"].astype("int64") if table == "weight_log" else when
            frame = pd.DataFrame({"fitbit_id": df["Id"].astype("int64").values, "time": key_time.values,
                                  "value": pd.to_numeric(df[value]).values, "order": order, "row": df["row"].values})
            if table == "daily_activity":
                frame["tracked"] = (df[["VeryActiveMinutes", "FairlyActiveMinutes", "LightlyActiveMinutes",
                                        "SedentaryMinutes"]].astype(int).sum(axis=1)).values
        per_table.setdefault(table, []).append(frame)
    return {t: pd.concat(parts, ignore_index=True) for t, parts in per_table.items()}


def _winners(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """The contract's merge rule: daily summaries by most steps, then tracked minutes; else the newest."""
    sort = ["value", "tracked", "order", "row"] if table == "daily_activity" else ["order", "row"]
    return frame.sort_values(sort).groupby(["fitbit_id", "time"]).tail(1)


def test_every_kind_lands_with_distinct_valid_keys(run):
    expected = _expected(run["root"], run["dirty"])
    assert set(expected) == {spec[0] for spec in SPEC.values()}
    for table, frame in expected.items():
        silver = run["lake"].read("silver", table).toPandas()
        key_time = "log_id" if table == "weight_log" else SILVER_TIME[table]
        want = _winners(frame, table)
        assert len(silver) == len(want), table
        got_keys = set(zip(silver["fitbit_id"].astype("int64"), pd.to_datetime(silver[key_time])
                           if table != "weight_log" else silver[key_time].astype("int64")))
        want_keys = set(zip(want["fitbit_id"], pd.to_datetime(want["time"]) if table != "weight_log"
                            else want["time"].astype("int64")))
        assert got_keys == want_keys, table


def test_merge_rules_pick_the_contracts_winner(run):
    expected = _expected(run["root"], run["dirty"])
    daily = run["lake"].read("silver", "daily_activity").toPandas()
    want = _winners(expected["daily_activity"], "daily_activity")
    got = dict(zip(zip(daily["fitbit_id"], pd.to_datetime(daily["activity_date"])), daily["total_steps"]))
    for fid, when, steps in zip(want["fitbit_id"], pd.to_datetime(want["time"]), want["value"]):
        assert got[(fid, when)] == steps
    # the months overlap on 4/12: month 1's partial day lost to month 2's fuller summary
    overlap = expected["daily_activity"][pd.to_datetime(expected["daily_activity"]["time"]) == "2016-04-12"]
    assert overlap.groupby("fitbit_id").size().max() == 2
    mets = run["lake"].read("silver", "minute_mets").toPandas()
    raw = _winners(expected["minute_mets"], "minute_mets")
    assert mets["mets"].sum() == pytest.approx(raw["value"].sum() / 10)


def test_dst_gap_hour_kept_as_read(run):
    hourly = run["lake"].read("silver", "hourly_steps").toPandas()
    assert (pd.to_datetime(hourly["activity_hour"]) == pd.Timestamp("2016-03-13 02:00:00")).any()


def test_quarantine_holds_exactly_the_dirty_rows(run):
    q = run["lake"].read("silver", "quarantine").toPandas()
    got = {}
    for row in q.itertuples():
        got.setdefault((row.source_file, row.row_number), set()).update(r.split(":")[0] for r in row.reasons)
    want = {(d["file"], d["row"]): {d["rule"], *d.get("implies", [])} for d in run["dirty"]}
    assert set(got) == set(want)
    for key, rules in want.items():
        assert got[key] == rules, key


def test_reconciliation_holds_and_rows_were_counted(run):
    assert all(r["holds"] for r in run["report"])
    total_lines = sum(sum(1 for _ in open(p)) - 1 for p in run["root"].rglob("*.csv"))
    assert run["produced"]["rows"] == total_lines
    assert run["lake"].count("bronze", "events") == total_lines


def test_gold_follows_every_kind(run):
    """Gold tables built from every kind, checked against the same pandas winners."""
    expected = _expected(run["root"], run["dirty"])
    lake = run["lake"]
    weights = _winners(expected["weight_log"], "weight_log")
    assert lake.count("gold", "fact_weight") == len(weights)
    assert lake.read("gold", "fact_weight").select("weigh_in_key").distinct().count() == len(weights)   # one each
    heart = _winners(expected["heart_rate"], "heart_rate")
    hr = lake.read("gold", "fact_heart_rate_hourly").toPandas()
    assert hr["readings"].sum() == len(heart)
    assert hr["max_bpm"].max() == heart["value"].max() and hr["min_bpm"].min() == heart["value"].min()
    hours = set()
    for table in ("hourly_steps", "hourly_calories", "hourly_intensities"):
        w = _winners(expected[table], table)
        hours |= set(zip(w["fitbit_id"], pd.to_datetime(w["time"])))
    assert lake.count("gold", "fact_hourly_activity") == len(hours)
    # 4/12/2016 is in both months: gold keeps the fuller (month-2) summary
    daily = _winners(expected["daily_activity"], "daily_activity")
    overlap = daily[pd.to_datetime(daily["time"]) == "2016-04-12"]
    fact = lake.read("gold", "fact_daily_activity").where("date_key = 20160412").toPandas()
    assert sorted(fact["total_steps"]) == sorted(overlap["value"])
    # sleep: sleepDay where present, else derived from minuteSleep
    sleep = lake.read("gold", "fact_sleep").toPandas()
    assert set(sleep["source"]) <= {"sleepDay", "minuteSleep"} and len(sleep) > 0
    dates = lake.read("gold", "dim_date").toPandas()
    assert dates["date_key"].min() <= 20160313 and (dates.loc[dates["date_key"] == 20160313, "day_of_week"] == "Sunday").all()
