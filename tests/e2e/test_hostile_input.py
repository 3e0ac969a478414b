"""Hostile input through the real broker, bronze, silver and gold: every bad row is quarantined once
with a reason, every good row reaches silver, and the run goes on.

The raw folder holds one sub-folder per hostile case. Each case's rows belong to a Fitbit Id of its
own, so what silver must hold is known per case from how the file was built, not from the code.
"""
from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.privacy import user_key_secret
from fitbit_lakehouse.tables import Lake

pytestmark = pytest.mark.e2e

DAILY_HEADER = ("Id,ActivityDate,TotalSteps,TotalDistance,TrackerDistance,LoggedActivitiesDistance,"
                "VeryActiveDistance,ModeratelyActiveDistance,LightActiveDistance,SedentaryActiveDistance,"
                "VeryActiveMinutes,FairlyActiveMinutes,LightlyActiveMinutes,SedentaryMinutes,Calories")
SLEEP_HEADER = "Id,SleepDay,TotalSleepRecords,TotalMinutesAsleep,TotalTimeInBed"
HOURLY_HEADER = "Id,ActivityHour,StepTotal"
I64_MAX = "9223372036854775807"


def daily(user: int, day: int, steps="8000", very="20", sedentary="700") -> str:
    return f"{user},4/{day}/2016,{steps},5.5,5.5,0,1,0.5,4,0,{very},10,200,{sedentary},2000"


def hourly(user: int, hour: str, steps="300") -> str:
    return f"{user},4/12/2016 {hour},{steps}"


def sleep(user: int, when: str, asleep=400, bed=430) -> str:
    return f"{user},{when},1,{asleep},{bed}"


# case -> (file, bytes of the file, rows that must be quarantined (1-based data rows), silver table, good keys)
def _cases() -> dict:
    cases = {}

    def add(case, file, lines, bad, table, good, header, bom=False):
        text = "\n".join([header] + lines) + "\n"   # surrogates stand for bytes that are not UTF-8
        data = text.encode("utf-8", errors="surrogateescape")
        cases[case] = (file, (b"\xef\xbb\xbf" if bom else b"") + data, set(bad), table, good)

    u = 9_000_000_001
    add("bom", "dailyActivity_merged.csv", [daily(u, d) for d in (12, 13, 14)], [], "daily_activity",
        {(u, f"2016-04-{d}") for d in (12, 13, 14)}, header=DAILY_HEADER, bom=True)
    u = 9_000_000_002
    add("overflow", "dailyActivity_merged.csv",
        [daily(u, 12), daily(u, 13, very=I64_MAX, sedentary=I64_MAX), daily(u, 14, steps="9" * 25), daily(u, 15)],
        [2, 3], "daily_activity", {(u, "2016-04-12"), (u, "2016-04-15")}, header=DAILY_HEADER)
    u = 9_000_000_003
    add("long_field", "hourlySteps_merged.csv",
        [hourly(u, "1:00:00 AM"), hourly(u, "2:00:00 AM", steps="7" * 200_000), "x" * 200_000 + ",4/12/2016 3:00:00 AM,5",
         hourly(u, "4:00:00 AM")],
        [2, 3], "hourly_steps", {(u, "2016-04-12 01:00:00"), (u, "2016-04-12 04:00:00")}, header=HOURLY_HEADER)
    u = 9_000_000_004
    add("bytes", "hourlySteps_merged.csv",
        [hourly(u, "1:00:00 AM"), hourly(u, "2:00:00 AM", steps="3\udcff\udcfe0"), "9000000\x00004,4/12/2016 3:00:00 AM,5",
         hourly(u, "4:00:00 AM", steps="1\x002")],
        [2, 3, 4], "hourly_steps", {(u, "2016-04-12 01:00:00")}, header=HOURLY_HEADER)
    u = 9_000_000_005
    add("dates", "sleepDay_merged.csv",
        [sleep(u, "4/12/2016 12:00:00 AM"), sleep(u, "4/13/9999 12:00:00 AM"), sleep(u, "2/30/2016 12:00:00 AM"),
         sleep(u, "4/14/1900 12:00:00 AM"), sleep(u, "4/15/2016 12:00:00 AM")],
        [2, 3, 4], "sleep_day", {(u, "2016-04-12 00:00:00"), (u, "2016-04-15 00:00:00")}, header=SLEEP_HEADER)
    u = 9_000_000_006
    reordered = "Calories,Note," + ",".join(c for c in DAILY_HEADER.split(",") if c != "Calories")

    def reorder(line: str) -> str:
        fields = line.split(",")
        return ",".join([fields[-1], "hello"] + fields[:-1])

    add("columns", "dailyActivity_merged.csv", [reorder(daily(u, d)) for d in (12, 13)], [], "daily_activity",
        {(u, "2016-04-12"), (u, "2016-04-13")}, header=reordered)
    cases["empty"] = ("sleepDay_merged.csv", b"", set(), "sleep_day", set())
    add("header_only", "hourlySteps_merged.csv", [], [], "hourly_steps", set(), header=HOURLY_HEADER)
    u = 9_000_000_008
    add("sleep_twice", "sleepDay_merged.csv",
        # the line sent last holds the earlier time and the smaller figures: only the order picks it
        [sleep(u, "4/12/2016 10:00:00 PM", 410, 440), sleep(u, "4/12/2016 12:00:00 AM", 300, 350)], [],
        "sleep_day", {(u, "2016-04-12 00:00:00"), (u, "2016-04-12 22:00:00")}, header=SLEEP_HEADER)
    return cases


@pytest.fixture(scope="module")
def run(base_settings, broker, test_root, spark):
    raw = test_root / "hostile_raw"
    cases = _cases()
    for case, (file, data, *_rest) in cases.items():
        (raw / case).mkdir(parents=True)
        (raw / case / file).write_bytes(data)
    outside = test_root / "outside_raw"
    outside.mkdir()
    (outside / "dailyActivity_merged.csv").write_text(DAILY_HEADER + "\n" + daily(9_000_000_009, 12) + "\n")
    (raw / "link").mkdir()
    (raw / "link" / "dailyActivity_merged.csv").symlink_to(outside / "dailyActivity_merged.csv")

    settings = base_settings.with_overrides(**{
        "paths.raw_dir": str(raw), "paths.lake_dir": str(test_root / "hostile"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_hostile",
        "kafka.alerts_topic": "e2e_hostile_alerts"})
    produced = pipeline.produce_step(settings)
    pipeline.bronze_step(settings)
    report = pipeline.silver_step(settings)
    gold = pipeline.gold_step(settings)
    return {"settings": settings, "cases": cases, "produced": produced, "report": report, "gold": gold,
            "lake": Lake(spark, settings)}


def _silver_keys(lake: Lake, table: str, time_column: str, ids: set[int]) -> set:
    rows = lake.read("silver", table).where(f"fitbit_id IN ({','.join(map(str, ids))})").toPandas()
    return {(int(i), str(pd.Timestamp(t)) if time_column != "activity_date" else str(t))
            for i, t in zip(rows["fitbit_id"], rows[time_column])}


TIME = {"daily_activity": "activity_date", "hourly_steps": "activity_hour", "sleep_day": "sleep_day"}


def test_the_run_goes_on_and_reconciles(run):
    assert all(r["holds"] for r in run["report"])
    assert run["produced"]["refused_files"] and "link" in run["produced"]["refused_files"][0]


def test_each_bad_row_is_quarantined_once_with_a_reason(run):
    q = run["lake"].read("silver", "quarantine").toPandas()
    got = sorted((f, int(r)) for f, r in zip(q["source_file"], q["row_number"]))
    want = sorted((f"{case}/{file}", row) for case, (file, _d, bad, _t, _g) in run["cases"].items() for row in bad)
    assert got == want
    assert all(len(reasons) > 0 for reasons in q["reasons"])
    reasons = {(f, int(r)): " ".join(rs) for f, r, rs in zip(q["source_file"], q["row_number"], q["reasons"])}
    assert "date_out_of_range" in reasons[("dates/sleepDay_merged.csv", 2)]
    assert "timestamp_unparseable" in reasons[("dates/sleepDay_merged.csv", 3)]
    assert "daily_minutes" in reasons[("overflow/dailyActivity_merged.csv", 2)]


def test_each_good_row_reaches_silver(run):
    for case, (_file, _data, _bad, table, good) in run["cases"].items():
        ids = {u for u, _ in good}
        if ids:
            assert _silver_keys(run["lake"], table, TIME[table], ids) == good, case


def test_nothing_from_outside_the_raw_folder_is_read(run):
    events = run["lake"].read("bronze", "events").toPandas()
    assert not events["source_file"].fillna("").str.startswith("link").any()
    assert run["lake"].read("silver", "daily_activity").where("fitbit_id = 9000000009").count() == 0


def test_two_sleep_summaries_on_one_day_give_one_gold_row_the_newer(run):
    settings = run["settings"]
    key = hmac.new(user_key_secret(settings).encode(), b"9000000008", hashlib.sha256).hexdigest()[:32]
    sleep = run["lake"].read("gold", "fact_sleep").where(f"user_key = '{key}'").toPandas()
    assert len(sleep) == 1
    assert (int(sleep["minutes_asleep"].iloc[0]), int(sleep["time_in_bed"].iloc[0])) == (300, 350)


def test_poison_messages_of_every_shape_are_quarantined(run):
    from kafka import KafkaProducer

    settings = run["settings"]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    poison = {
        "empty": (b"", None),
        "binary": (bytes(range(256)), None),
        "json": (b'{"event_type": "dailyActivity", "Id": 1}', None),
        "unknown_kind": (b"1,2,3", [("kind", b"stepsFromMars")]),
        "huge": (b"z" * 2_000_000, [("kind", b"hourlySteps"), ("source_file", b"huge.csv"),
                                    ("first_row", b"1"), ("header", HOURLY_HEADER.encode())]),
    }
    for value, headers in poison.values():
        producer.send(settings.events_topic, value, headers=headers or [])
    producer.flush()
    producer.close()
    before = run["lake"].count("silver", "quarantine")
    pipeline.bronze_step(settings)
    report = pipeline.silver_step(settings)
    assert all(r["holds"] for r in report)
    assert run["lake"].count("silver", "quarantine") == before + len(poison)
    # every reader reads both tables whole, the binary message included (delta-rs refused them: not UTF-8)
    from deltalake import DeltaTable

    events = DeltaTable(run["lake"].path("bronze", "events")).to_pyarrow_table(columns=["value", "value_bytes"])
    assert poison["binary"][0] in events.column("value_bytes").to_pylist()
    quarantined = DeltaTable(run["lake"].path("silver", "quarantine")).to_pyarrow_table().to_pylist()
    assert any("\ufffd" in (row["raw_value"] or "") for row in quarantined)


def test_a_replay_quarantines_no_bad_row_twice(run):
    """produce --replay sends every row again (new Kafka offsets): the bad rows among them are the
    same source records, so quarantine keeps one row each and every silver table stays as it was."""
    settings, lake = run["settings"], run["lake"]
    tables = ["quarantine", *TIME]
    before = {t: lake.count("silver", t) for t in tables}
    bronze = lake.count("bronze", "events")
    replayed = pipeline.produce_step(settings, replay=True)
    assert replayed["rows"] > 0 and pipeline.bronze_step(settings)["records"] == replayed["rows"]
    assert lake.count("bronze", "events") == bronze + replayed["rows"]
    report = pipeline.silver_step(settings)
    assert all(r["holds"] for r in report)
    assert {t: lake.count("silver", t) for t in tables} == before
