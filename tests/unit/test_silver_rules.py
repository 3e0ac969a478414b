"""Silver's pure functions on tiny bronze batches: parsing, typing, every validation rule, melting,
and the merge rules of resolve_keys."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fitbit_lakehouse.catalogue import BY_KIND, UNKNOWN_KIND
from fitbit_lakehouse.produce import event_id
from fitbit_lakehouse.quality import Rules
from fitbit_lakehouse.silver import parse_events, resolve_keys, typed_records, update_condition, valid_rows

BRONZE_SCHEMA = T.StructType([
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("record_index", T.IntegerType()),
    T.StructField("kafka_timestamp", T.TimestampType()), T.StructField("key", T.StringType()),
    T.StructField("value", T.StringType()), T.StructField("event_type", T.StringType()),
    T.StructField("source_file", T.StringType()), T.StructField("row_number", T.LongType()),
    T.StructField("source_header", T.StringType())])

BIG_ID = "8877689391"          # > 2**31
T0 = datetime(2016, 5, 1, 12, 0, 0)


def raw_event(kind: str, line: str, row: int = 1, source: str | None = None, header: str | None = None) -> dict:
    """A bronze record as the producer's headers and bronze make it: one CSV line of a kind's file."""
    k = BY_KIND[kind]
    return {"value": line, "event_type": k.kind, "source_file": source or k.file_name, "row_number": row,
            "source_header": header or ",".join(k.header), "event_id": event_id(k.kind, line)}


def event(kind: str, fields: list[str], row: int = 1, source: str | None = None) -> dict:
    return raw_event(kind, ",".join(fields), row, source)


def bronze(spark, values: list, times: list | None = None, offsets: list | None = None):
    """A bronze-like frame: a dict is a record of the producer, a str a message without its headers."""
    rows = []
    for i, v in enumerate(values):
        offset = offsets[i] if offsets else i
        ts = times[i] if times else T0 + timedelta(seconds=offset)
        if isinstance(v, str):
            v = {"value": v}
        rows.append(("fitbit_wellness_stream", 0, offset, 0, ts, "k", v["value"], v.get("event_type"),
                     v.get("source_file"), v.get("row_number"), v.get("source_header")))
    return spark.createDataFrame(rows, BRONZE_SCHEMA)


@pytest.fixture(scope="module")
def rules(base_settings) -> Rules:
    return Rules.from_settings(base_settings)


def typed(spark, rules, kind: str, values: list, **kw):
    events = parse_events(bronze(spark, values, **kw)).where(F.col("kind") == kind)
    return typed_records(events, BY_KIND[kind], rules)


def by_row(rows) -> dict:
    return {r["_row_number"]: r for r in rows}


# --- daily activity row builder ---------------------------------------------------------------

DAILY_DEFAULT = {
    "Id": BIG_ID, "ActivityDate": "4/12/2016", "TotalSteps": "13162", "TotalDistance": "8.5",
    "TrackerDistance": "8.5", "LoggedActivitiesDistance": "0", "VeryActiveDistance": "1.88",
    "ModeratelyActiveDistance": "0.55", "LightActiveDistance": "6.06", "SedentaryActiveDistance": "0",
    "VeryActiveMinutes": "25", "FairlyActiveMinutes": "13", "LightlyActiveMinutes": "328",
    "SedentaryMinutes": "728", "Calories": "1985",
}


def daily(**over) -> list[str]:
    values = {**DAILY_DEFAULT, **over}
    return [values[h] for h in BY_KIND["dailyActivity"].header]


# --- parse_events ------------------------------------------------------------------------

def test_parse_events_poison_and_unknown_type(spark):
    good = event("hourlySteps", ["1", "4/12/2016 12:00:00 AM", "5"])
    unknown_type = {**good, "event_type": "stepsPerFortnight"}
    rows = parse_events(bronze(spark, ["not json", unknown_type, good, "{}", ""])).orderBy("offset").collect()
    assert [(r["kind"], r["_event_reason"]) for r in rows] == [
        (UNKNOWN_KIND, "unparseable_event"),
        (UNKNOWN_KIND, "unknown_event_type"),
        ("hourlySteps", None),
        (UNKNOWN_KIND, "unparseable_event"),
        (UNKNOWN_KIND, "unparseable_event"),
    ]
    assert rows[0]["_raw_value"] == "not json"               # the raw payload is kept
    assert rows[2]["event_id"] == good["event_id"]
    assert rows[2]["_fields"] == ["1", "4/12/2016 12:00:00 AM", "5"]
    assert rows[2]["row_number"] == 1 and rows[2]["source_file"] == "hourlySteps_merged.csv"
    # a poison record's id is deterministic too (quarantine keeps one row per bad source record)
    assert rows[0]["event_id"] == event_id("unknown", "not json")


# --- daily activity: typing and its rules --------------------------------------------------

def test_daily_activity_rules_and_types(spark, rules):
    cases = {
        1: (daily(), []),
        2: (daily(Id="0"), ["id_not_positive_integer"]),
        3: (daily(Id="-5"), ["id_not_positive_integer"]),
        4: (daily(Id="abc"), ["id_not_positive_integer"]),
        5: (daily(ActivityDate="2016-04-12"), ["timestamp_unparseable:activity_date"]),
        6: (daily(ActivityDate="4/31/2016"), ["timestamp_unparseable:activity_date"]),
        7: (daily(TotalSteps="abc"), ["not_a_number:total_steps"]),
        8: (daily(TotalDistance=""), ["not_a_number:total_distance"]),
        9: (daily(Calories="-1"), ["negative_value:calories"]),
        10: (daily(VeryActiveDistance="-0.5"), ["negative_value:very_active_distance"]),
        # one field above 1440 (the sum is then above too)
        11: (daily(VeryActiveMinutes="1441", FairlyActiveMinutes="0", LightlyActiveMinutes="0",
                   SedentaryMinutes="0"),
             ["daily_minutes_above_max:very_active_minutes", "daily_minutes_sum_above_max"]),
        # each field fine, the sum 1441
        12: (daily(VeryActiveMinutes="1", FairlyActiveMinutes="0", LightlyActiveMinutes="0",
                   SedentaryMinutes="1440"), ["daily_minutes_sum_above_max"]),
        # exactly 1440 in total is fine
        13: (daily(VeryActiveMinutes="10", FairlyActiveMinutes="20", LightlyActiveMinutes="30",
                   SedentaryMinutes="1380"), []),
        14: (daily(TotalSteps="-3", Calories="x"), ["negative_value:total_steps", "not_a_number:calories"]),
        # a count must be a whole number: 12.5 steps is not silently truncated to 12
        15: (daily(TotalSteps="12.5"), ["not_a_number:total_steps"]),
        16: (daily(Id="1503960366.5"), ["id_not_positive_integer"]),
        17: (daily(SedentaryMinutes="abc"), ["not_a_number:sedentary_minutes"]),
        18: (daily(Id=" 1503960366 ", TotalSteps=" 7 "), []),               # surrounding blanks are trimmed
        # a whole number as a float column writes it (pandas' to_csv of a column with a gap) is a count
        19: (daily(TotalSteps="13162.0", Calories="1985.00"), []),
        # Java's number suffixes, which Spark's cast takes, are no CSV number; exponents are
        21: (daily(TotalDistance="8.5d", VeryActiveDistance="1f"),
             ["not_a_number:total_distance", "not_a_number:very_active_distance"]),
        22: (daily(TotalDistance="8.5e0", VeryActiveDistance=".5"), []),
        24: (daily(Id="1503960366.0"), ["id_not_positive_integer"]),          # an Id is its digits
    }
    values = [event("dailyActivity", f, row=n) for n, (f, _) in cases.items()]
    values.append(raw_event("dailyActivity", f"{BIG_ID},4/12/2016,100", row=20))     # too few fields
    rows = by_row(typed(spark, rules, "dailyActivity", values).collect())
    assert len(rows) == len(cases) + 1
    for n, (_, reasons) in cases.items():
        assert sorted(rows[n]["reasons"]) == sorted(reasons), (n, rows[n]["reasons"])
    assert rows[20]["reasons"] == ["field_count"]
    assert (rows[18]["fitbit_id"], rows[18]["total_steps"]) == (1503960366, 7)
    assert (rows[19]["total_steps"], rows[19]["calories"]) == (13162, 1985)
    assert (rows[22]["total_distance"], rows[22]["very_active_distance"]) == (8.5, 0.5)

    clean = rows[1]
    assert clean["fitbit_id"] == 8877689391 and isinstance(clean["fitbit_id"], int)
    assert clean["activity_date"] == date(2016, 4, 12)
    assert clean["total_steps"] == 13162
    assert clean["total_distance"] == pytest.approx(8.5)
    assert clean["very_active_distance"] == pytest.approx(1.88)
    assert (clean["very_active_minutes"], clean["fairly_active_minutes"], clean["lightly_active_minutes"],
            clean["sedentary_minutes"], clean["calories"]) == (25, 13, 328, 728, 1985)
    # lineage
    assert clean["_event_id"] == event_id("dailyActivity", ",".join(daily()))
    assert clean["_source_kind"] == "dailyActivity" and clean["_source_file"] == "dailyActivity_merged.csv"
    assert clean["_kafka_offset"] == 0 and clean["_record_index"] == 0 and clean["record_part"] is None


def test_typed_schema(spark, rules):
    df = typed(spark, rules, "dailyActivity", [event("dailyActivity", daily())])
    types = {f.name: f.dataType for f in df.schema.fields}
    assert types["fitbit_id"] == T.LongType()
    assert types["activity_date"] == T.DateType()
    assert types["total_steps"] == T.LongType()
    assert types["total_distance"] == T.DoubleType()
    assert types["reasons"].elementType == T.StringType()
    assert types["_kafka_timestamp"] == T.TimestampNTZType()
    hourly = typed(spark, rules, "hourlySteps", [event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "5"])])
    assert {f.name: f.dataType for f in hourly.schema.fields}["activity_hour"] == T.TimestampNTZType()


# --- timestamps: naive wall clock, DST gap -------------------------------------------------

def test_timestamps_ntz_and_dst_gap(spark, rules):
    values = [
        event("hourlySteps", [BIG_ID, "3/13/2016 2:00:00 AM", "12"], row=1),     # US DST gap hour
        event("hourlySteps", [BIG_ID, "3/13/2016 2:30:00 AM", "13"], row=2),
        event("hourlySteps", [BIG_ID, "4/12/2016 12:00:00 AM", "0"], row=3),     # midnight
        event("hourlySteps", [BIG_ID, "4/12/2016 12:00:00 PM", "7"], row=4),     # noon
        event("hourlySteps", [BIG_ID, "11/6/2016 1:00:00 AM", "7"], row=5),      # DST overlap hour
        event("hourlySteps", [BIG_ID, "4/12/2016 13:00:00 PM", "7"], row=6),     # not the file's format
        event("hourlySteps", [BIG_ID, "4/12/2016", "7"], row=7),
    ]
    rows = by_row(typed(spark, rules, "hourlySteps", values).collect())
    assert rows[1]["activity_hour"] == datetime(2016, 3, 13, 2, 0)
    assert rows[2]["activity_hour"] == datetime(2016, 3, 13, 2, 30)
    assert rows[3]["activity_hour"] == datetime(2016, 4, 12, 0, 0)
    assert rows[4]["activity_hour"] == datetime(2016, 4, 12, 12, 0)
    assert rows[5]["activity_hour"] == datetime(2016, 11, 6, 1, 0)
    assert all(rows[n]["reasons"] == [] for n in range(1, 6))
    assert rows[1]["step_total"] == 12
    assert rows[6]["reasons"] == ["timestamp_unparseable:activity_hour"]
    assert rows[7]["reasons"] == ["timestamp_unparseable:activity_hour"]


@contextmanager
def session_conf(spark, **conf):
    """Temporarily change settings of the one test SparkSession (restored even on failure)."""
    old = {k: spark.conf.get(k) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        yield
    finally:
        for k, v in old.items():
            spark.conf.set(k, v)


def test_dst_gap_independent_of_session_time_zone(spark, rules):
    with session_conf(spark, **{"spark.sql.session.timeZone": "America/Chicago",
                                "spark.sql.timestampType": "TIMESTAMP_LTZ"}):
        values = [event("hourlySteps", [BIG_ID, "3/13/2016 2:00:00 AM", "12"], row=1),
                  event("hourlySteps", [BIG_ID, "3/13/2016 2:59:00 AM", "12"], row=2)]
        rows = by_row(typed(spark, rules, "hourlySteps", values).collect())
    assert rows[1]["reasons"] == [] and rows[2]["reasons"] == []
    assert rows[1]["activity_hour"] == datetime(2016, 3, 13, 2, 0)
    assert rows[2]["activity_hour"] == datetime(2016, 3, 13, 2, 59)


# --- the other kinds' rules ---------------------------------------------------------------

def test_sleep_day_rules(spark, rules):
    values = [
        event("sleepDay", [BIG_ID, "4/12/2016 12:00:00 AM", "1", "327", "346"], row=1),
        event("sleepDay", [BIG_ID, "4/13/2016 12:00:00 AM", "2", "400", "400"], row=2),   # equal: fine
        event("sleepDay", [BIG_ID, "4/14/2016 12:00:00 AM", "1", "400", "399"], row=3),
        event("sleepDay", [BIG_ID, "4/15/2016 12:00:00 AM", "-1", "10", "20"], row=4),
        event("sleepDay", [BIG_ID, "4/16/2016 12:00:00 AM", "2", "1440", "1440"], row=5),   # the whole day: fine
        event("sleepDay", [BIG_ID, "4/17/2016 12:00:00 AM", "2", "1400", "1441"], row=6),   # a daily minutes field
    ]
    rows = by_row(typed(spark, rules, "sleepDay", values).collect())
    assert rows[1]["reasons"] == [] and rows[2]["reasons"] == [] and rows[5]["reasons"] == []
    assert rows[3]["reasons"] == ["asleep_above_time_in_bed"]
    assert rows[4]["reasons"] == ["negative_value:total_sleep_records"]
    assert rows[6]["reasons"] == ["daily_minutes_above_max:total_time_in_bed"]
    assert rows[1]["sleep_day"] == datetime(2016, 4, 12)
    assert (rows[1]["total_sleep_records"], rows[1]["total_minutes_asleep"], rows[1]["total_time_in_bed"]) \
        == (1, 327, 346)


def test_heart_rate_rules(spark, rules):
    bpm = {1: "20", 2: "250", 3: "19", 4: "251", 5: "97", 6: "abc"}
    values = [event("heartrate_seconds", [BIG_ID, f"4/12/2016 7:21:{n:02d} AM", v], row=n) for n, v in bpm.items()]
    rows = by_row(typed(spark, rules, "heartrate_seconds", values).collect())
    assert [rows[n]["reasons"] for n in (1, 2, 5)] == [[], [], []]
    assert rows[3]["reasons"] == ["heart_rate_out_of_range:bpm"]
    assert rows[4]["reasons"] == ["heart_rate_out_of_range:bpm"]
    assert rows[6]["reasons"] == ["not_a_number:bpm"]
    assert rows[5]["bpm"] == 97 and rows[5]["time"] == datetime(2016, 4, 12, 7, 21, 5)


def test_minute_intensity_rules(spark, rules):
    values = {1: "0", 2: "3", 3: "4", 4: "2"}
    events = [event("minuteIntensitiesNarrow", [BIG_ID, f"4/12/2016 1:0{n}:00 AM", v], row=n)
              for n, v in values.items()]
    rows = by_row(typed(spark, rules, "minuteIntensitiesNarrow", events).collect())
    assert [rows[n]["reasons"] for n in (1, 2, 4)] == [[], [], []]
    assert rows[3]["reasons"] == ["minute_intensity_out_of_range:intensity"]
    assert rows[4]["intensity"] == 2


def test_minute_sleep_rules(spark, rules):
    values = {1: "1", 2: "3", 3: "0", 4: "4"}
    events = [event("minuteSleep", [BIG_ID, f"4/12/2016 2:4{n}:30 AM", v, "11380564589"], row=n)
              for n, v in values.items()]
    rows = by_row(typed(spark, rules, "minuteSleep", events).collect())
    assert rows[1]["reasons"] == [] and rows[2]["reasons"] == []
    assert rows[3]["reasons"] == ["minute_sleep_out_of_range:value"]
    assert rows[4]["reasons"] == ["minute_sleep_out_of_range:value"]
    assert rows[1]["log_id"] == 11380564589 and rows[1]["sleep_minute"] == datetime(2016, 4, 12, 2, 41, 30)


def test_minute_steps_and_mets(spark, rules):
    steps = [event("minuteStepsNarrow", [BIG_ID, f"4/12/2016 1:0{n}:00 AM", v], row=n)
             for n, v in {1: "300", 2: "301", 3: "0"}.items()]
    rows = by_row(typed(spark, rules, "minuteStepsNarrow", steps).collect())
    assert rows[1]["reasons"] == [] and rows[3]["reasons"] == []
    assert rows[2]["reasons"] == ["steps_per_minute_above_max:steps"]

    mets = [event("minuteMETsNarrow", [BIG_ID, f"4/12/2016 1:0{n}:00 AM", v], row=n)
            for n, v in {1: "10", 2: "157", 3: "-1"}.items()]
    rows = by_row(typed(spark, rules, "minuteMETsNarrow", mets).collect())
    # the double nearest the real METs (157 x 0.1 would give 15.700000000000001)
    assert rows[1]["mets"] == 1.0
    assert rows[2]["mets"] == 15.7
    assert rows[1]["reasons"] == [] and rows[2]["reasons"] == []
    assert rows[3]["reasons"] == ["negative_value:mets"]


def test_weight_log_types_and_rules(spark, rules):
    def w(row, fat="", manual="True", kg="52.599998474121101", log="1462233599000"):
        return event("weightLogInfo", [BIG_ID, "5/2/2016 11:59:59 PM", kg, "115.963147877", fat, "22.649999618530298",
                                       manual, log], row=row)
    values = [w(1), w(2, fat="22", manual="False"), w(3, manual="yes"), w(4, fat="abc"), w(5, kg="-1"),
              w(6, manual="")]
    rows = by_row(typed(spark, rules, "weightLogInfo", values).collect())
    assert rows[1]["reasons"] == [] and rows[2]["reasons"] == []
    assert rows[1]["fat"] is None                               # empty Fat: null, no reason
    assert rows[2]["fat"] == pytest.approx(22.0)
    assert rows[1]["is_manual_report"] is True and rows[2]["is_manual_report"] is False
    assert rows[1]["weight_kg"] == pytest.approx(52.599998474121101)
    assert rows[1]["bmi"] == pytest.approx(22.649999618530298)
    assert rows[1]["log_id"] == 1462233599000
    assert rows[1]["logged_at"] == datetime(2016, 5, 2, 23, 59, 59)
    assert rows[3]["reasons"] == ["not_a_boolean:is_manual_report"]
    assert rows[4]["reasons"] == ["not_a_number:fat"]
    assert rows[5]["reasons"] == ["negative_value:weight_kg"]
    assert rows[6]["reasons"] == ["not_a_boolean:is_manual_report"]


def test_disabled_rule_is_skipped_but_structural_rules_are_not(spark, base_settings):
    settings = base_settings.with_overrides(**{
        "validation.rules.heart_rate_out_of_range": {"min": 20, "max": 250, "enabled": False},
        "validation.rules.id_not_positive_integer": {"enabled": False}})
    rules = Rules.from_settings(settings)
    values = [event("heartrate_seconds", [BIG_ID, "4/12/2016 7:21:00 AM", "300"], row=1),
              event("heartrate_seconds", ["0", "4/12/2016 7:21:00 AM", "60"], row=2)]
    rows = by_row(typed(spark, rules, "heartrate_seconds", values).collect())
    assert rows[1]["reasons"] == []
    assert rows[2]["reasons"] == ["id_not_positive_integer"]


# --- wide kinds ----------------------------------------------------------------------------

def test_wide_melt(spark, rules):
    minutes = [str(i) for i in range(60)]
    minutes[7] = "301"       # too many steps in one minute
    minutes[42] = "x"        # not a number
    good = event("minuteStepsWide", [BIG_ID, "3/13/2016 2:00:00 AM", *minutes], row=1)
    bad_id = event("minuteStepsWide", ["-1", "4/13/2016 1:00:00 AM", *["0"] * 60], row=2)
    bad_count = raw_event("minuteStepsWide", f"{BIG_ID},4/13/2016 1:00:00 AM,1,2", row=3)
    rows = typed(spark, rules, "minuteStepsWide", [good, bad_id, bad_count]).collect()

    melted = sorted((r for r in rows if r["_row_number"] == 1), key=lambda r: r["record_part"])
    assert len(melted) == 60
    assert len(rows) == 62
    start = datetime(2016, 3, 13, 2, 0)         # the DST-gap hour stays 02:xx
    for i, r in enumerate(melted):
        assert r["record_part"] == i
        assert r["activity_minute"] == start + timedelta(minutes=i)
        assert r["fitbit_id"] == 8877689391
        assert r["_event_id"] == f"{good['event_id']}:{i:02d}"
        if i == 7:
            assert r["reasons"] == ["steps_per_minute_above_max:steps"] and r["steps"] == 301
        elif i == 42:
            assert r["reasons"] == ["not_a_number:steps"] and r["steps"] is None
        else:
            assert r["reasons"] == [] and r["steps"] == i

    [id_row] = [r for r in rows if r["_row_number"] == 2]
    assert id_row["reasons"] == ["id_not_positive_integer"] and id_row["record_part"] is None
    assert id_row["steps"] is None
    [count_row] = [r for r in rows if r["_row_number"] == 3]
    assert count_row["reasons"] == ["field_count"]


def test_wide_and_narrow_same_table_columns(spark, rules):
    narrow = typed(spark, rules, "minuteIntensitiesNarrow",
                   [event("minuteIntensitiesNarrow", [BIG_ID, "4/13/2016 1:05:00 AM", "1"])])
    wide = typed(spark, rules, "minuteIntensitiesWide",
                 [event("minuteIntensitiesWide", [BIG_ID, "4/13/2016 1:00:00 AM", *["1"] * 60])])
    assert narrow.columns == wide.columns
    assert narrow.schema == wide.schema


# --- valid_rows + resolve_keys ---------------------------------------------------------------

def _resolve(spark, rules, kind: str, values: list, **kw) -> list:
    records = typed(spark, rules, kind, values, **kw)
    return resolve_keys(valid_rows(records, BY_KIND[kind]), BY_KIND[kind].key).collect()


def test_resolve_daily_activity(spark, rules):
    def d(user, steps, sedentary="728"):
        return daily(Id=user, TotalSteps=steps, SedentaryMinutes=sedentary)

    values, offsets = [], []

    def add(fields, offset):
        values.append(event("dailyActivity", fields, row=offset))
        offsets.append(offset)

    # user 1: more steps arrives first, fewer steps later -> more steps wins
    add(d("1", "9000"), 10)
    add(d("1", "5000"), 11)
    # user 2: fewer steps first, more later -> more steps wins
    add(d("2", "5000"), 20)
    add(d("2", "9000"), 21)
    # user 3: same steps, the earlier one has more tracked minutes
    add(d("3", "7000", sedentary="900"), 30)
    add(d("3", "7000", sedentary="800"), 31)
    # user 4: same steps and minutes, different calories -> the newer wins
    add(daily(Id="4", Calories="2000"), 40)
    add(daily(Id="4", Calories="2100"), 41)
    # user 5: exact duplicates
    add(d("5", "1234"), 50)
    add(d("5", "1234"), 51)
    add(d("5", "1234"), 52)
    # user 6: an invalid record with more steps never wins
    add(d("6", "100"), 60)
    add(daily(Id="6", TotalSteps="99999", Calories="-5"), 61)

    rows = {r["fitbit_id"]: r for r in _resolve(spark, rules, "dailyActivity", values, offsets=offsets)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert (rows[1]["total_steps"], rows[1]["_kafka_offset"]) == (9000, 10)
    assert (rows[2]["total_steps"], rows[2]["_kafka_offset"]) == (9000, 21)
    assert (rows[3]["sedentary_minutes"], rows[3]["_kafka_offset"]) == (900, 30)
    assert (rows[4]["calories"], rows[4]["_kafka_offset"]) == (2100, 41)
    assert rows[5]["total_steps"] == 1234
    assert (rows[6]["total_steps"], rows[6]["_kafka_offset"]) == (100, 60)


def test_resolve_the_split_daily_files_by_the_contracts_order(spark, rules):
    """dailySteps: more steps wins; dailyIntensities: more tracked minutes; dailyCalories has neither,
    so the newer wins (CONTRACT: more steps, then more tracked minutes, then the newer), in either order."""
    def resolved(kind: str, first: list, second: list) -> list:
        values = [event(kind, first, row=1), event(kind, second, row=2)]
        return _resolve(spark, rules, kind, values, offsets=[1, 2])

    def intensities(sedentary: str) -> list:
        return [BIG_ID, "4/12/2016", sedentary, "200", "20", "10", "0", "3.1", "0.5", "1.2"]

    for more, less in (("9000", "5000"), ("5000", "9000")):
        [steps] = resolved("dailySteps", [BIG_ID, "4/12/2016", more], [BIG_ID, "4/12/2016", less])
        assert steps["step_total"] == 9000
        [minutes] = resolved("dailyIntensities", intensities("900" if more == "9000" else "800"),
                             intensities("800" if more == "9000" else "900"))
        assert minutes["sedentary_minutes"] == 900
        [calories] = resolved("dailyCalories", [BIG_ID, "4/12/2016", more], [BIG_ID, "4/12/2016", less])
        assert calories["calories"] == int(less)   # the one received second


def test_resolve_daily_activity_newer_by_timestamp(spark, rules):
    # equal steps and minutes: the later Kafka timestamp wins even at a lower offset (another partition)
    values = [event("dailyActivity", daily(Id="7", Calories="2000")),
              event("dailyActivity", daily(Id="7", Calories="2222"))]
    times = [T0 + timedelta(minutes=5), T0]
    [row] = _resolve(spark, rules, "dailyActivity", values, times=times, offsets=[1, 2])
    assert (row["calories"], row["_kafka_offset"]) == (2000, 1)


def test_resolve_other_kinds_newer_wins(spark, rules):
    values = [
        event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "900"]),    # more steps but older
        event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "100"]),    # newer: wins
        event("hourlySteps", ["2", "4/12/2016 1:00:00 AM", "100"]),    # newer: wins
        event("hourlySteps", ["2", "4/12/2016 1:00:00 AM", "900"]),
        event("hourlySteps", ["1", "4/12/2016 2:00:00 AM", "5"]),      # exact duplicates
        event("hourlySteps", ["1", "4/12/2016 2:00:00 AM", "5"]),
        event("hourlySteps", ["1", "4/12/2016 3:00:00 AM", "5"]),      # same offset, later timestamp wins
        event("hourlySteps", ["1", "4/12/2016 3:00:00 AM", "6"]),
    ]
    times = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=9), T0 + timedelta(seconds=3),
             T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), T0 + timedelta(seconds=1)]
    offsets = [1, 2, 3, 4, 5, 6, 7, 8]
    rows = {(r["fitbit_id"], r["activity_hour"].hour): r
            for r in _resolve(spark, rules, "hourlySteps", values, times=times, offsets=offsets)}
    assert sorted(rows) == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert rows[(1, 1)]["step_total"] == 100
    assert rows[(2, 1)]["step_total"] == 100
    assert rows[(1, 2)]["step_total"] == 5
    assert rows[(1, 3)]["step_total"] == 5


def test_resolve_weight_log_key_is_log_id(spark, rules):
    def w(log, kg):
        return event("weightLogInfo", ["1", "5/2/2016 11:59:59 PM", kg, "1", "", "22", "True", log])
    values = [w("100", "60"), w("100", "61"), w("200", "70")]
    rows = {r["log_id"]: r for r in _resolve(spark, rules, "weightLogInfo", values)}
    assert sorted(rows) == [100, 200]
    assert rows[100]["weight_kg"] == pytest.approx(61.0)


def test_valid_rows_version(spark, rules):
    values = [event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "5"]),
              event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "5"]),
              event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "6"]),
              event("hourlySteps", ["1", "4/12/2016 1:00:00 AM", "-6"])]
    rows = valid_rows(typed(spark, rules, "hourlySteps", values), BY_KIND["hourlySteps"]).orderBy(
        "_kafka_offset").collect()
    assert len(rows) == 3                             # the negative one is not valid
    assert rows[0]["_version"] < rows[1]["_version"] < rows[2]["_version"]
    assert [c for c in rows[0].asDict() if not c.startswith("_")] == ["fitbit_id", "activity_hour", "step_total"]


# --- the file's header: columns by name -------------------------------------------------

def test_reordered_and_extra_columns_are_read_by_name(spark, rules):
    header = "StepTotal,Extra,ActivityHour,Id"
    values = [raw_event("hourlySteps", "55,x,4/12/2016 1:00:00 AM,1503960366", row=1, header=header),
              raw_event("hourlySteps", "55,x,4/12/2016 1:00:00 AM", row=2, header=header)]
    rows = by_row(typed(spark, rules, "hourlySteps", values).collect())
    assert rows[1]["reasons"] == []
    assert (rows[1]["fitbit_id"], rows[1]["activity_hour"], rows[1]["step_total"]) == \
        (1503960366, datetime(2016, 4, 12, 1, 0), 55)
    assert rows[2]["reasons"] == ["field_count"]


def test_missing_column_is_named(spark, rules):
    header = "Id,ActivityHour"
    [row] = typed(spark, rules, "hourlySteps",
                  [raw_event("hourlySteps", "1503960366,4/12/2016 1:00:00 AM", header=header)]).collect()
    assert row["reasons"] == ["missing_column:StepTotal"]


def test_update_condition_compares_every_data_column():
    kind = BY_KIND["hourlyIntensities"]
    condition = update_condition(kind)
    assert condition.startswith("s._version > t._version AND NOT (")
    for column in ("total_intensity", "average_intensity"):
        assert f"t.`{column}` <=> s.`{column}`" in condition
    assert "fitbit_id" not in condition and "activity_hour" not in condition


def test_resolve_wide_and_narrow_same_minute(spark, rules):
    """A minute from a Wide file and from the Narrow file share the key; one row per minute remains."""
    narrow = event("minuteStepsNarrow", ["1", "4/13/2016 1:05:00 AM", "77"])
    wide = event("minuteStepsWide", ["1", "4/13/2016 1:00:00 AM", *[str(i) for i in range(60)]])
    events = parse_events(bronze(spark, [wide, narrow]))
    records = typed_records(events.where("kind = 'minuteStepsWide'"), BY_KIND["minuteStepsWide"], rules) \
        .unionByName(typed_records(events.where("kind = 'minuteStepsNarrow'"), BY_KIND["minuteStepsNarrow"], rules))
    kind = BY_KIND["minuteStepsNarrow"]
    rows = {r["activity_minute"].minute: r for r in resolve_keys(valid_rows(records, kind), kind.key).collect()}
    assert len(rows) == 60
    assert rows[5]["steps"] == 77           # the narrow record is newer (offset 1)
    assert rows[6]["steps"] == 6
