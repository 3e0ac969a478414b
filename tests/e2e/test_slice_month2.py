"""CSV -> real Kafka -> Spark -> Delta bronze/silver/gold, on three real month-2 files.

Every expected figure is computed here with pandas straight from the CSVs, following CONTRACT.md.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.privacy import user_key_secret
from tests.kafka_topics import delete_all_records, topic_messages

pytestmark = pytest.mark.e2e

FILES = "dailyActivity,sleepDay,hourlySteps"


@pytest.fixture(scope="module")
def settings(base_settings, broker, month2, test_root):
    return base_settings.with_overrides(**{
        "paths.raw_dir": str(month2), "paths.lake_dir": str(test_root / "slice"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_slice_events",
        "kafka.alerts_topic": "e2e_slice_alerts"})


@pytest.fixture(scope="module")
def lake(settings, spark):
    """The pipeline run once: produce, bronze, silver, gold (as `make run` does, in-process)."""
    produced = pipeline.produce_step(settings, file_filter=FILES)
    pipeline.bronze_step(settings)
    reconciliation = pipeline.silver_step(settings)
    pipeline.gold_step(settings)
    from fitbit_lakehouse.tables import Lake

    return {"produced": produced, "reconciliation": reconciliation, "lake": Lake(spark, settings)}


@pytest.fixture(scope="module")
def csv(month2):
    read = lambda name: pd.read_csv(month2 / f"{name}_merged.csv")  # noqa: E731
    daily = read("dailyActivity")
    daily["date"] = pd.to_datetime(daily["ActivityDate"], format="%m/%d/%Y")
    sleep_raw = read("sleepDay")
    sleep = sleep_raw.drop_duplicates().copy()
    sleep["date"] = pd.to_datetime(sleep["SleepDay"], format="%m/%d/%Y %I:%M:%S %p").dt.normalize()
    hourly = read("hourlySteps")
    hourly["hour_ts"] = pd.to_datetime(hourly["ActivityHour"], format="%m/%d/%Y %I:%M:%S %p")
    return {"daily": daily, "sleep": sleep, "sleep_raw": sleep_raw, "hourly": hourly}


def _key(fitbit_id: int, secret: str) -> str:
    return hmac.new(secret.encode(), str(fitbit_id).encode(), hashlib.sha256).hexdigest()[:32]


def _gold(lake, name) -> pd.DataFrame:
    return lake["lake"].read("gold", name).toPandas()


def test_every_row_reaches_bronze_and_reconciles(lake, csv):
    rows = len(csv["daily"]) + len(csv["sleep_raw"]) + len(csv["hourly"])
    assert lake["produced"]["rows"] == rows
    assert lake["lake"].count("bronze", "events") == rows
    assert all(r["holds"] for r in lake["reconciliation"])
    by_table = {r["table"]: r for r in lake["reconciliation"]}
    assert by_table["sleep_day"]["duplicates"] == len(csv["sleep_raw"]) - len(csv["sleep"])
    # these files hold no bad record: silver/quarantine (CONTRACT) is there all the same, and empty
    assert sum(r["quarantined"] for r in lake["reconciliation"]) == 0
    assert lake["lake"].exists("silver", "quarantine") and lake["lake"].count("silver", "quarantine") == 0


def test_a_count_that_is_off_fails_the_silver_step_loudly(lake, settings, spark, test_root):
    """A copy of the lake loses one silver row behind silver's back: the next silver run (nothing new
    in bronze) finds records in != silver rows + duplicates + quarantined for that table, and fails."""
    import shutil

    from fitbit_lakehouse.silver import ReconciliationError

    copy = settings.with_overrides(**{"paths.lake_dir": str(test_root / "slice_miscounted")})
    for part in ("bronze", "silver", "checkpoints", "_secrets"):   # a lake's user keys go with their secret
        shutil.copytree(settings.lake_dir / part, copy.lake_dir / part)
    assert all(r["holds"] for r in pipeline.silver_step(copy))   # the copy reconciles as it is
    table = copy.lake_dir / "silver" / "daily_activity"
    one = spark.read.format("delta").load(str(table)).select("fitbit_id", "activity_date").first()
    spark.sql(f"DELETE FROM delta.`{table}` WHERE fitbit_id = {one[0]} AND activity_date = DATE'{one[1]}'")
    with pytest.raises(ReconciliationError, match=r"daily_activity: in=\d+ != silver \d+") as failure:
        pipeline.silver_step(copy)
    assert "bronze/events" not in str(failure.value)


def test_silver_holds_distinct_keys_typed(lake, csv):
    daily = lake["lake"].read("silver", "daily_activity").toPandas()
    assert len(daily) == csv["daily"][["Id", "date"]].drop_duplicates().shape[0]
    got = daily.assign(date=pd.to_datetime(daily["activity_date"])).set_index(["fitbit_id", "date"]).sort_index()
    want = csv["daily"].set_index(["Id", "date"]).sort_index()
    assert (got["total_steps"].values == want["TotalSteps"].values).all()
    assert np.allclose(got["total_distance"].values, want["TotalDistance"].values)
    sleep = lake["lake"].read("silver", "sleep_day").toPandas()
    assert len(sleep) == len(csv["sleep"])
    schema = dict(lake["lake"].read("silver", "hourly_steps").dtypes)
    assert schema["activity_hour"] == "timestamp_ntz" and schema["fitbit_id"] == "bigint"


def test_gold_daily_and_kpis_match_pandas(lake, csv, settings, month2_is_full):
    secret = user_key_secret(settings)
    d = csv["daily"].copy()
    d["user_key"] = d["Id"].map(lambda i: _key(i, secret))
    d["date_key"] = d["date"].dt.strftime("%Y%m%d").astype(int)
    d["active"] = d["VeryActiveMinutes"] + d["FairlyActiveMinutes"] + d["LightlyActiveMinutes"]
    d["mvpa"] = d["VeryActiveMinutes"] + d["FairlyActiveMinutes"]
    d["valid"] = d["TotalSteps"] > 0

    fact = _gold(lake, "fact_daily_activity")
    assert len(fact) == len(d) and int(fact["is_valid_day"].sum()) == int(d["valid"].sum())
    if month2_is_full:   # PROFILE.md's figures for the whole month
        assert (len(d), int(d["valid"].sum())) == (940, 863)
    assert "fitbit_id" not in fact.columns
    f = fact.set_index(["user_key", "date_key"]).sort_index()
    w = d.set_index(["user_key", "date_key"]).sort_index()
    assert (f["active_minutes"].values == w["active"].values).all()
    assert (f["tracked_minutes"].values == (w["active"] + w["SedentaryMinutes"]).values).all()

    s = csv["sleep"].copy()
    s["user_key"] = s["Id"].map(lambda i: _key(i, secret))
    s["date_key"] = s["date"].dt.strftime("%Y%m%d").astype(int)
    sleep = _gold(lake, "fact_sleep")
    assert len(sleep) == len(s) and set(sleep["source"]) == {"sleepDay"}

    v = d[d["valid"]].merge(s, on=["user_key", "date_key"], how="left")
    activity = 0.5 * np.minimum(v["TotalSteps"] / 10000, 1) + 0.5 * np.minimum(v["mvpa"] / 30, 1)
    efficiency = v["TotalMinutesAsleep"] / v["TotalTimeInBed"]
    sleep_score = 0.5 * np.minimum(v["TotalMinutesAsleep"] / 420, 1) + 0.5 * efficiency
    v["wellness"] = 100 * (0.5 * activity + 0.5 * sleep_score)   # unrounded
    v["segment"] = np.select([v["active"] >= 270, v["active"] >= 180], ["High", "Medium"], "Low")

    kpi = _gold(lake, "kpi_daily_wellness").merge(v, on=["user_key", "date_key"], how="outer", indicator=True)
    assert (kpi["_merge"] == "both").all() and len(kpi) == int(d["valid"].sum())
    assert kpi["wellness_score"].isna().sum() == v["wellness"].isna().sum()
    both = kpi.dropna(subset=["wellness"])
    # rounded to one decimal: within half a unit of the exact score
    assert (abs(both["wellness_score"] - both["wellness"]) <= 0.05 + 1e-9).all()
    assert (kpi["daily_segment"] == kpi["segment"]).all()


def test_dim_user_segments_and_goal_alerts(lake, csv, settings):
    secret = user_key_secret(settings)
    d = csv["daily"][csv["daily"]["TotalSteps"] > 0].copy()
    d["active"] = d["VeryActiveMinutes"] + d["FairlyActiveMinutes"] + d["LightlyActiveMinutes"]
    per_user = d.groupby("Id")["active"].mean()
    want = {_key(i, secret): ("High" if m >= 270 else "Medium" if m >= 180 else "Low") for i, m in per_user.items()}
    users = _gold(lake, "dim_user").set_index("user_key")
    for key, segment in want.items():
        assert users.loc[key, "engagement_segment"] == segment
    no_valid = set(users.index) - set(want)
    assert all(users.loc[k, "engagement_segment"] == "Unknown" for k in no_valid)

    h = csv["hourly"].sort_values(["Id", "hour_ts"]).copy()
    h["day"] = h["hour_ts"].dt.normalize()
    h["cum"] = h.groupby(["Id", "day"])["StepTotal"].cumsum()
    first = h[h["cum"] >= 10000].groupby(["Id", "day"]).first().reset_index()
    alerts = _gold(lake, "goal_alerts")
    assert len(alerts) == len(first)
    got = alerts.set_index(["user_key", "date_key"]).sort_index()
    first["user_key"] = first["Id"].map(lambda i: _key(i, secret))
    first["date_key"] = first["day"].dt.strftime("%Y%m%d").astype(int)
    exp = first.set_index(["user_key", "date_key"]).sort_index()
    assert (got["steps_at_alert"].values == exp["cum"].values).all()
    assert (pd.to_datetime(got["reached_at"]).values == exp["hour_ts"].values).all()


def test_gold_reads_the_same_through_delta_rs(lake, settings):
    from deltalake import DeltaTable

    for name in ("fact_daily_activity", "kpi_daily_wellness", "dim_user", "fact_sleep"):
        spark_df = _gold(lake, name)
        rs_df = DeltaTable(str(settings.lake_dir / "gold" / name)).to_pandas()
        key = ["user_key", "date_key"] if "date_key" in spark_df.columns else ["user_key"]
        a = spark_df.sort_values(key).reset_index(drop=True)
        b = rs_df[a.columns].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_datetimelike_compat=True)


def test_insights_reads_the_same_with_spark_where_delta_rs_cannot(lake, settings, spark, monkeypatch):
    """The report reads gold with delta-rs; catalog tables (Databricks) and tables delta-rs cannot read
    go through Spark instead, which must give the same frames at the same versions."""
    from fitbit_lakehouse import insights

    with_delta_rs = insights._read_inputs(spark, settings)
    monkeypatch.setattr(insights, "_read_with_delta_rs", lambda *args, **kwargs: None)
    with_spark = insights._read_inputs(spark, settings)
    assert with_spark.versions == with_delta_rs.versions and with_spark.rows == with_delta_rs.rows
    assert set(with_delta_rs.versions) >= {"gold.kpi_daily_wellness", "gold.fact_sleep", "gold.dim_user"}
    for name, frame in with_delta_rs.frames.items():
        theirs = with_spark.frames[name]
        if name == "quarantine":   # lists of reasons: compared as text
            frame, theirs = (f.assign(reasons=f["reasons"].map(lambda r: "|".join(r))) for f in (frame, theirs))
        columns = list(frame.columns)
        pd.testing.assert_frame_equal(frame.sort_values(columns).reset_index(drop=True),
                                      theirs[columns].sort_values(columns).reset_index(drop=True),
                                      check_dtype=False, obj=name)


def _snapshot(lake) -> dict:
    silver = {t: lake["lake"].read("silver", t).toPandas() for t in ("daily_activity", "sleep_day", "hourly_steps")}
    gold = {t: _gold(lake, t) for t in ("kpi_daily_wellness", "goal_alerts", "dim_user")}
    return {"bronze": lake["lake"].count("bronze", "events"), "silver": silver, "gold": gold}


def _same_frames(before: dict, after: dict, key_of) -> None:
    for table, frame in before.items():
        key = key_of(frame)
        pd.testing.assert_frame_equal(frame.sort_values(key).reset_index(drop=True),
                                      after[table].sort_values(key).reset_index(drop=True), obj=table)


def _published_alerts(settings) -> list:
    return [(m.key.decode(), json.loads(m.value)) for m in topic_messages(settings.bootstrap_servers, settings.alerts_topic)]


def test_rerun_with_nothing_new_adds_no_bronze_record(lake, settings):
    before = _snapshot(lake)
    produced = pipeline.produce_step(settings, file_filter=FILES)
    assert produced["rows"] == 0 and produced["skipped_files"] == 3
    assert pipeline.bronze_step(settings)["records"] == 0
    pipeline.silver_step(settings)
    assert pipeline.gold_step(settings)["user_days"] == 0
    after = _snapshot(lake)
    assert after["bronze"] == before["bronze"]
    _same_frames(before["silver"], after["silver"], lambda f: ["fitbit_id", f.columns[1]])
    _same_frames(before["gold"], after["gold"], lambda f: [c for c in ("user_key", "date_key") if c in f])


def test_the_synthetic_data_set_is_not_added_to_a_lake_of_real_files(lake, settings, test_root):
    """The raw folder emptied (or FITBIT_RAW_DIR mistyped to an empty one) after a run on real files:
    the synthetic data set would land beside them in gold. The produce step refuses; nothing is sent."""
    from fitbit_lakehouse.produce import MixedDataSets

    empty = test_root / "slice_empty_raw"
    empty.mkdir()
    bronze = lake["lake"].count("bronze", "events")
    with pytest.raises(MixedDataSets, match="this run would add the synthetic data set to them"):
        pipeline.produce_step(settings.with_overrides(**{"paths.raw_dir": str(empty)}))
    assert pipeline.bronze_step(settings)["records"] == 0 and lake["lake"].count("bronze", "events") == bronze


def test_replay_changes_nothing_downstream(lake, settings, csv):
    before = _snapshot(lake)
    alerts_before = before["gold"]["goal_alerts"]
    silver_tables = ("daily_activity", "sleep_day", "hourly_steps", "quarantine", "user_identity")
    versions = {t: lake["lake"].version("silver", t) for t in silver_tables}
    assert pipeline.produce_step(settings, file_filter=FILES, replay=True)["rows"] == before["bronze"]
    assert pipeline.bronze_step(settings)["records"] == before["bronze"]
    report = pipeline.silver_step(settings)
    pipeline.gold_step(settings)
    assert all(r["holds"] for r in report)
    by_table = {r["table"]: r for r in report}
    assert by_table["daily_activity"]["duplicates"] == len(csv["daily"])   # the replayed copy of every row
    # rows silver holds as they are rewrite no file: no silver table has a new version
    assert {t: lake["lake"].version("silver", t) for t in silver_tables} == versions
    after = _snapshot(lake)
    lineage = ["_version"]   # a struct; the rest, lineage included, must be untouched
    _same_frames({t: f.drop(columns=lineage) for t, f in before["silver"].items()},
                 {t: f.drop(columns=lineage) for t, f in after["silver"].items()},
                 lambda f: ["fitbit_id", f.columns[1]])
    _same_frames(before["gold"], after["gold"], lambda f: [c for c in ("user_key", "date_key") if c in f])
    # no second alert anywhere: not in the table, not on the topic
    published = _published_alerts(settings)
    assert len(published) == len(alerts_before)
    assert {k for k, _ in published} == {f"{u}|{d}" for u, d in zip(alerts_before["user_key"], alerts_before["date_key"])}


def test_alerts_exactly_once_across_crashes_of_the_publisher(lake, settings, spark):
    """A crash before the commit leaves an open transaction (aborted, never seen); a crash after it
    loses the local note of what was published (the topic's headers say it). Neither sends twice."""
    from fitbit_lakehouse.alerts import HEADER_GOLD_VERSION, publish_alerts

    alerts = lake["lake"].read("gold", "goal_alerts").toPandas()
    assert len(alerts) > 0
    # crash before the commit: a process begins a transaction, sends into it and dies (os._exit)
    script = (
        "import os, sys\nfrom kafka import KafkaProducer\n"
        "p = KafkaProducer(bootstrap_servers=sys.argv[1], transactional_id=sys.argv[2])\n"
        "p.init_transactions(); p.begin_transaction()\n"
        "p.send(sys.argv[3], key=b'ghost|20160412', value=b'{}', headers=[(sys.argv[4], b'999')]).get(timeout=30)\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", script, settings.bootstrap_servers,
                    f"fitbit-alerts-{settings.alerts_topic}", settings.alerts_topic, HEADER_GOLD_VERSION],
                   check=True, timeout=120)
    # crash after the commit: the note of the published version is lost
    (settings.checkpoints_dir / "alerts" / "published_version.json").unlink()
    assert publish_alerts(spark, settings) == 0
    published = _published_alerts(settings)
    assert sorted(k for k, _ in published) == sorted(f"{u}|{d}" for u, d in zip(alerts["user_key"], alerts["date_key"]))


def test_alerts_go_out_once_when_their_change_feed_is_gone(lake, settings, spark, test_root, caplog):
    """A compaction and a VACUUM outside the project (Databricks' predictive optimisation) take the file
    of an alert the publisher has not sent yet: it sends the alerts the topic does not hold, and no other;
    where the topic's retention has deleted older alerts, those are sent again rather than lost."""
    import logging
    import shutil
    from collections import Counter

    from deltalake import DeltaTable
    from pyspark.sql import functions as F

    from fitbit_lakehouse.alerts import publish_alerts

    copy = settings.with_overrides(**{"paths.lake_dir": str(test_root / "alerts_feed_gone"),
                                      "kafka.alerts_topic": "e2e_slice_alerts_feed_gone"})
    table = copy.lake_dir / "gold" / "goal_alerts"
    shutil.copytree(lake["lake"].path("gold", "goal_alerts"), table)
    first = publish_alerts(spark, copy)
    assert first == len(_gold(lake, "goal_alerts")) > 0

    def add_an_alert_and_lose_its_feed() -> None:
        # gold adds an alert (a day after the last one), then the table is compacted and vacuumed before
        # the publisher runs again: the file that held the alert, which its change feed reads, is gone
        alert = spark.read.format("delta").load(str(table)).orderBy(F.desc("date_key")).limit(1)
        alert.withColumn("date_key", alert["date_key"] + 1).write.format("delta").mode("append").save(str(table))
        delta = DeltaTable(str(table))
        assert delta.optimize.compact()["numFilesRemoved"] >= 2
        delta.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)

    def table_keys() -> Counter:
        keys = DeltaTable(str(table)).to_pandas(columns=["user_key", "date_key"])
        return Counter(f"{u}|{d}" for u, d in keys.itertuples(index=False))

    add_an_alert_and_lose_its_feed()
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.alerts"):
        assert publish_alerts(spark, copy) == 1
    assert any("change feed" in r.getMessage() for r in caplog.records)
    assert Counter(k for k, _ in _published_alerts(copy)) == table_keys()
    assert publish_alerts(spark, copy) == 0

    # the topic's retention deletes every alert on it, and the next alert's feed is gone too
    delete_all_records(copy.bootstrap_servers, copy.alerts_topic)
    add_an_alert_and_lose_its_feed()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.alerts"):
        assert publish_alerts(spark, copy) == sum(table_keys().values())
    assert any("retention" in r.getMessage() for r in caplog.records)
    assert Counter(k for k, _ in _published_alerts(copy)) == table_keys()   # what the topic holds now


def test_poison_messages_end_in_quarantine(lake, settings):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    producer.send(settings.events_topic, b"this is not an event of this pipeline")       # no headers
    producer.send(settings.events_topic, b"1,2,3", headers=[("kind", b"stepsFromMars")])  # an unknown kind
    producer.flush()
    producer.close()
    pipeline.bronze_step(settings)
    report = pipeline.silver_step(settings)
    assert all(r["holds"] for r in report)
    q = lake["lake"].read("silver", "quarantine").toPandas()
    reasons = {row.raw_value: list(row.reasons) for row in q.itertuples()}
    assert reasons["this is not an event of this pipeline"] == ["unparseable_event"]
    assert reasons["1,2,3"] == ["unknown_event_type"]


SQL = Path(__file__).resolve().parents[2] / "sql"


def _query(spark, name: str) -> list:
    return spark.sql((SQL / "queries" / f"{name}.sql").read_text().rstrip().rstrip(";")).collect()


def _register_gold_views(lake):
    from fitbit_lakehouse.gold import GOLD_KEYS

    for name in GOLD_KEYS:
        if lake["lake"].exists("gold", name):
            lake["lake"].read("gold", name).createOrReplaceTempView(name)


@pytest.mark.parametrize("query", sorted(p.name for p in (SQL / "queries").glob("*.sql")))
def test_sql_queries_run_on_gold(lake, spark, query):
    _register_gold_views(lake)
    rows = _query(spark, query.removesuffix(".sql"))
    assert rows, f"{query} returned nothing"


def test_steps_by_weekday_query_matches_pandas(lake, spark, csv):
    _register_gold_views(lake)
    got = {r["day_of_week"]: r["mean_steps"] for r in _query(spark, "steps_by_weekday")}
    d = csv["daily"][csv["daily"]["TotalSteps"] > 0]
    want = d.groupby(d["date"].dt.day_name())["TotalSteps"].mean().round(0)
    assert set(got) == set(want.index)
    for day, steps in want.items():
        assert got[day] == pytest.approx(steps, abs=0.5)


def test_kpi_summary_hourly_profile_and_sleep_queries_match_pandas(lake, spark, csv):
    """The analysts' queries against the same figures worked out from the CSVs (CONTRACT's rules)."""
    _register_gold_views(lake)
    d = csv["daily"][csv["daily"]["TotalSteps"] > 0]
    [summary] = _query(spark, "kpi_summary")
    active = d["VeryActiveMinutes"] + d["FairlyActiveMinutes"] + d["LightlyActiveMinutes"]
    assert (summary["valid_user_days"], summary["users"]) == (len(d), d["Id"].nunique())
    assert summary["mean_daily_steps"] == pytest.approx(d["TotalSteps"].mean(), abs=0.05)
    assert summary["mean_active_minutes"] == pytest.approx(active.mean(), abs=0.05)

    h = csv["hourly"]
    got = {r["hour"]: (r["mean_steps"], r["user_hours"]) for r in _query(spark, "hourly_profile")}
    want = h.groupby(h["hour_ts"].dt.hour)["StepTotal"].agg(["mean", "size"])
    assert set(got) == set(want.index)
    for hour, (mean, size) in want.iterrows():
        assert got[hour][1] == size and got[hour][0] == pytest.approx(mean, abs=0.05)

    s = csv["sleep"].sort_index().groupby(["Id", "date"]).tail(1)   # one summary per user-day: the last
    got = {r["hours_in_bed"]: (r["nights"], r["mean_minutes_asleep"])
           for r in _query(spark, "sleep_efficiency_vs_time_in_bed")}
    want = s.groupby(s["TotalTimeInBed"] // 60)["TotalMinutesAsleep"].agg(["size", "mean"])
    assert set(got) == set(want.index)
    for hours, (size, mean) in want.iterrows():
        assert got[hours][0] == size and got[hours][1] == pytest.approx(mean, abs=0.05)


def test_ddl_matches_the_gold_tables(lake, spark):
    """sql/ddl creates tables whose columns and types are those the pipeline writes."""
    spark.sql("CREATE DATABASE IF NOT EXISTS ddl_check")
    try:
        for ddl in ("gold.sql", "silver.sql"):
            text = "\n".join(l for l in (SQL / "ddl" / ddl).read_text().splitlines() if not l.startswith("--"))
            for statement in filter(str.strip, text.split(";")):
                spark.sql(statement.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TABLE IF NOT EXISTS ddl_check."))
        checked = 0
        for table in spark.catalog.listTables("ddl_check"):
            layer = "silver" if table.name == "user_identity" else "gold"
            if not lake["lake"].exists(layer, table.name):
                continue
            declared = [(f.name, f.dataType.simpleString()) for f in spark.table(f"ddl_check.{table.name}").schema]
            written = [(f.name, f.dataType.simpleString()) for f in lake["lake"].read(layer, table.name).schema]
            assert declared == written, table.name
            checked += 1
        assert checked >= 7
    finally:
        spark.sql("DROP DATABASE IF EXISTS ddl_check CASCADE")


def test_a_topic_just_created_comes_back_with_its_id(settings):
    """The topic ids key the producer's ledger (and bronze's check). Right after a create, a describe
    does not know the topic yet: without its id, a fresh lake's second run sent everything again."""
    from fitbit_lakehouse.kafka_broker import ensure_topics

    fresh = settings.with_overrides(**{"kafka.events_topic": "e2e_slice_fresh_topic",
                                       "kafka.alerts_topic": "e2e_slice_fresh_topic_alerts"})
    first = ensure_topics(fresh)
    assert all(first.get(t) for t in (fresh.events_topic, fresh.alerts_topic)), first
    assert ensure_topics(fresh) == first
