"""Gold builders on tiny hand-made silver/gold frames; every expected figure is worked out here by hand
(or in plain Python) from CONTRACT.md, never taken from the function under test."""
from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest

from fitbit_lakehouse.gold import (Kpi, Scope, dim_date, dim_user, fact_daily_activity, fact_heart_rate_hourly,
                                   fact_hourly_activity, fact_sleep, goal_alerts, kpi_daily_wellness, sleep_days,
                                   user_days)
from fitbit_lakehouse.privacy import user_key, user_key_column

SECRET = "unit-test-secret"
U1, U2, U3 = 1503960366, 8877689391, 4020332650          # U2 > 2**31


def key(fitbit_id: int) -> str:
    return hmac.new(SECRET.encode(), str(fitbit_id).encode(), hashlib.sha256).hexdigest()[:32]


@pytest.fixture(scope="module")
def identity(spark):
    return spark.createDataFrame([(U1, key(U1)), (U2, key(U2)), (U3, key(U3))], "fitbit_id bigint, user_key string")


@pytest.fixture(scope="module")
def kpi(base_settings) -> Kpi:
    return Kpi.from_settings(base_settings)


def ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


# --- user_key ------------------------------------------------------------------------------

def test_user_key():
    expected = hmac.new(b"s1", b"8877689391", hashlib.sha256).hexdigest()
    assert user_key(8877689391, "s1") == expected[:32]
    assert user_key(8877689391, "s1") == user_key(8877689391, "s1") == user_key("8877689391", "s1")
    assert user_key(8877689391, "s1") != user_key(8877689391, "s2")
    assert user_key(8877689391, "s1") != user_key(8877689392, "s1")
    assert len(user_key(1, "s")) == 32 and all(c in "0123456789abcdef" for c in user_key(1, "s"))
    assert "8877689391" not in user_key(8877689391, "s1")


def test_user_key_column_is_the_same_hmac(spark):
    for secret in (SECRET, "x" * 100):        # a key longer than the hash block is hashed first
        ids = spark.createDataFrame([(U1,), (U2,), (1,)], "fitbit_id bigint")
        got = dict(ids.select("fitbit_id", user_key_column("fitbit_id", secret).alias("k")).collect())
        assert got == {i: user_key(i, secret) for i in (U1, U2, 1)}


def test_kpi_from_settings_defaults(kpi):
    """The contract's defaults, as conf/base.yml sets them."""
    assert (kpi.valid_day_min_steps, kpi.steps_goal, kpi.mvpa_goal_minutes, kpi.asleep_goal_minutes) == (1, 10000, 30, 420)
    assert (kpi.steps_weight, kpi.mvpa_weight, kpi.duration_weight, kpi.efficiency_weight) == (0.5, 0.5, 0.5, 0.5)
    assert (kpi.activity_weight, kpi.sleep_weight, kpi.scale, kpi.decimals) == (0.5, 0.5, 100, 1)
    assert kpi.segments == (("High", 270), ("Medium", 180), ("Low", 0))
    assert (kpi.unknown_segment, kpi.goal_alert_steps) == ("Unknown", 10000)


# --- fact_daily_activity --------------------------------------------------------------------

def test_fact_daily_activity(spark, identity, kpi):
    schema = ("fitbit_id bigint, activity_date date, total_steps bigint, total_distance double, calories bigint, "
              "very_active_minutes bigint, fairly_active_minutes bigint, lightly_active_minutes bigint, "
              "sedentary_minutes bigint")
    rows = [
        (U1, date(2016, 4, 12), 13162, 8.5, 1985, 25, 13, 328, 728),
        (U1, date(2016, 4, 13), 0, 0.0, 1440, 0, 0, 0, 1440),
        (U2, date(2016, 5, 1), 1, 0.01, 2000, 0, 0, 1, 1439),
        (999, date(2016, 4, 12), 500, 0.3, 1500, 0, 0, 10, 1000),    # not in identity: left out
    ]
    out = fact_daily_activity(spark.createDataFrame(rows, schema), identity, kpi)
    assert "fitbit_id" not in out.columns
    got = {(r["user_key"], r["date_key"]): r.asDict() for r in out.collect()}
    assert set(got) == {(key(U1), 20160412), (key(U1), 20160413), (key(U2), 20160501)}
    a = got[(key(U1), 20160412)]
    assert (a["total_steps"], a["total_distance_km"], a["calories"]) == (13162, 8.5, 1985)
    assert (a["very_active_minutes"], a["fairly_active_minutes"], a["lightly_active_minutes"],
            a["sedentary_minutes"]) == (25, 13, 328, 728)
    assert a["active_minutes"] == 25 + 13 + 328
    assert a["mvpa_minutes"] == 25 + 13
    assert a["tracked_minutes"] == 25 + 13 + 328 + 728
    assert a["is_valid_day"] is True
    b = got[(key(U1), 20160413)]
    assert (b["active_minutes"], b["mvpa_minutes"], b["tracked_minutes"], b["is_valid_day"]) == (0, 0, 1440, False)
    c = got[(key(U2), 20160501)]
    assert (c["active_minutes"], c["tracked_minutes"], c["is_valid_day"]) == (1, 1440, True)


# --- kpi_daily_wellness ---------------------------------------------------------------------

def _activity(steps, mvpa):
    return 0.5 * min(steps / 10000, 1) + 0.5 * min(mvpa / 30, 1)


def _sleep(asleep, efficiency):
    return 0.5 * min(asleep / 420, 1) + 0.5 * efficiency


def test_kpi_daily_wellness(spark, kpi):
    daily_schema = "user_key string, date_key int, is_valid_day boolean, total_steps bigint, mvpa_minutes bigint, " \
                   "active_minutes bigint"
    daily = spark.createDataFrame([
        ("a", 20160412, True, 12000, 45, 300),     # both parts capped at 1
        ("a", 20160413, True, 5000, 12, 200),      # partial
        ("a", 20160414, True, 3000, 0, 100),       # no sleep that day
        ("a", 20160415, False, 0, 0, 0),           # not a valid day: no KPI row, though it has sleep
        ("b", 20160412, True, 10000, 30, 270),     # segment boundaries
        ("b", 20160413, True, 9999, 29, 269),
        ("b", 20160414, True, 100, 1, 180),
        ("b", 20160415, True, 100, 1, 179),
        ("c", 20160412, True, 8000, 20, 250),      # sleep with no time in bed: no efficiency
    ], daily_schema)
    sleep = spark.createDataFrame([
        ("a", 20160412, 450, 0.9),
        ("a", 20160413, 240, 240 / 300),
        ("a", 20160415, 400, 0.95),
        ("a", 20160416, 400, 0.95),                # no activity row
        ("c", 20160412, 0, None),
    ], "user_key string, date_key int, minutes_asleep bigint, sleep_efficiency double")
    got = {(r["user_key"], r["date_key"]): r for r in kpi_daily_wellness(daily, sleep, kpi).collect()}
    assert set(got) == {("a", 20160412), ("a", 20160413), ("a", 20160414), ("b", 20160412), ("b", 20160413),
                        ("b", 20160414), ("b", 20160415), ("c", 20160412)}

    r = got[("a", 20160412)]
    assert r["activity_score"] == pytest.approx(1.0)
    assert r["sleep_score"] == pytest.approx(0.5 * 1 + 0.5 * 0.9)           # 0.95
    assert r["wellness_score"] == pytest.approx(97.5)                       # 100 * (0.5 + 0.475)
    assert r["sleep_efficiency"] == pytest.approx(0.9)
    assert (r["active_minutes"], r["daily_segment"]) == (300, "High")

    r = got[("a", 20160413)]
    assert r["activity_score"] == pytest.approx(0.45)                       # 0.5*0.5 + 0.5*0.4
    assert r["sleep_score"] == pytest.approx(0.5 * 240 / 420 + 0.5 * 0.8)   # 0.685714...
    assert r["wellness_score"] == pytest.approx(56.8)                       # 100*(0.225+0.342857) = 56.79
    assert r["daily_segment"] == "Medium"

    r = got[("a", 20160414)]
    assert r["activity_score"] == pytest.approx(0.15)
    assert r["sleep_score"] is None and r["wellness_score"] is None and r["sleep_efficiency"] is None
    assert r["daily_segment"] == "Low"

    assert [got[("b", d)]["daily_segment"] for d in (20160412, 20160413, 20160414, 20160415)] == \
        ["High", "Medium", "Medium", "Low"]
    assert got[("b", 20160413)]["activity_score"] == pytest.approx(_activity(9999, 29))
    assert got[("b", 20160412)]["activity_score"] == pytest.approx(1.0)

    r = got[("c", 20160412)]
    assert r["activity_score"] == pytest.approx(0.5 * 0.8 + 0.5 * 20 / 30)
    assert r["wellness_score"] is None

    for (user, day), row in got.items():
        if row["sleep_score"] is not None:
            expected = 100 * (0.5 * row["activity_score"] + 0.5 * row["sleep_score"])
            assert row["wellness_score"] == pytest.approx(round(expected, 1))


def test_kpi_daily_wellness_without_sleep(spark, kpi):
    daily = spark.createDataFrame([("a", 20160412, True, 2000, 3, 50)],
                                  "user_key string, date_key int, is_valid_day boolean, total_steps bigint, "
                                  "mvpa_minutes bigint, active_minutes bigint")
    [r] = kpi_daily_wellness(daily, None, kpi).collect()
    assert r["activity_score"] == pytest.approx(_activity(2000, 3))          # 0.1 + 0.05
    assert r["activity_score"] == pytest.approx(0.15)
    assert r["wellness_score"] is None and r["sleep_score"] is None and r["daily_segment"] == "Low"


# --- dim_user -------------------------------------------------------------------------------

def test_dim_user(spark, kpi):
    identity = spark.createDataFrame([(1, "u1"), (2, "u2"), (3, "u3"), (4, "u4"), (5, "u5")],
                                     "fitbit_id bigint, user_key string")
    daily = spark.createDataFrame([
        ("u1", 20160412, True, 300, 10000),
        ("u1", 20160413, False, 0, 0),
        ("u1", 20160414, True, 200, 6000),
        ("u2", 20160412, False, 0, 0),            # only non-worn days
        ("u4", 20160420, True, 270, 9000),
        ("u5", 20160412, True, 179, 1000),
        ("u5", 20160413, True, 180, 2001),
    ], "user_key string, date_key int, is_valid_day boolean, active_minutes bigint, total_steps bigint")
    got = {r["user_key"]: r for r in dim_user(daily, identity, kpi).collect()}
    assert set(got) == {"u1", "u2", "u3", "u4", "u5"}

    u1 = got["u1"]
    assert u1["avg_active_minutes"] == pytest.approx((300 + 200) / 2)       # 250 -> Medium
    assert u1["avg_daily_steps"] == pytest.approx((10000 + 6000) / 2)
    assert u1["valid_days"] == 2
    assert (u1["first_date"], u1["last_date"]) == (date(2016, 4, 12), date(2016, 4, 14))
    assert u1["engagement_segment"] == "Medium"

    assert got["u2"]["engagement_segment"] == "Unknown" and got["u2"]["valid_days"] == 0
    assert got["u2"]["avg_active_minutes"] is None
    assert got["u3"]["engagement_segment"] == "Unknown" and got["u3"]["valid_days"] == 0
    assert got["u3"]["first_date"] is None
    assert (got["u4"]["engagement_segment"], got["u4"]["valid_days"]) == ("High", 1)
    assert got["u5"]["avg_active_minutes"] == pytest.approx(179.5)
    assert got["u5"]["avg_daily_steps"] == pytest.approx(1500.5)
    assert got["u5"]["engagement_segment"] == "Low"


def test_dim_user_without_daily(spark, kpi, identity):
    rows = dim_user(None, identity, kpi).collect()
    assert sorted(r["user_key"] for r in rows) == sorted([key(U1), key(U2), key(U3)])
    assert {(r["engagement_segment"], r["valid_days"]) for r in rows} == {("Unknown", 0)}


# --- fact_sleep -----------------------------------------------------------------------------

SLEEP_DAY_SCHEMA = ("fitbit_id bigint, sleep_day timestamp_ntz, total_sleep_records bigint, "
                    "total_minutes_asleep bigint, total_time_in_bed bigint")
MINUTE_SLEEP_SCHEMA = "fitbit_id bigint, sleep_minute timestamp_ntz, value bigint, log_id bigint"


def _minutes(user, log, start, values):
    first = ts(start)
    return [(user, first + timedelta(minutes=i), v, log) for i, v in enumerate(values)]


@pytest.fixture(scope="module")
def sleep_inputs(spark):
    sleep_day = spark.createDataFrame([
        (U1, ts("2016-04-12 00:00:00"), 1, 327, 346),
        (U2, ts("2016-04-14 00:00:00"), 1, 0, 0),                      # nothing in bed: no efficiency
    ], SLEEP_DAY_SCHEMA).selectExpr("*", "CAST(NULL AS timestamp_ntz) AS _kafka_timestamp", "0 AS _kafka_partition",
                                    "0L AS _kafka_offset", "0 AS _record_index")
    minutes = (
        _minutes(U1, 9, "2016-04-12 01:00:00", [1, 1, 2])              # ends 4/12: sleepDay wins that day
        + _minutes(U1, 10, "2016-04-12 23:58:00", [1, 1, 2, 1, 3, 1])  # crosses midnight, ends 4/13
        + _minutes(U1, 11, "2016-04-13 14:00:00", [1, 1, 1])           # a nap, ends 4/13
        + _minutes(U2, 20, "2016-04-12 03:00:00", [1, 2, 3, 1])        # 4/12 has sleepDay for U1 only
    )
    return sleep_day, spark.createDataFrame(minutes, MINUTE_SLEEP_SCHEMA)


def test_fact_sleep(spark, identity, sleep_inputs):
    sleep_day, minute_sleep = sleep_inputs
    out = fact_sleep(sleep_day, minute_sleep, identity)
    assert "fitbit_id" not in out.columns
    got = {(r["user_key"], r["date_key"]): r for r in out.collect()}
    assert set(got) == {(key(U1), 20160412), (key(U1), 20160413), (key(U2), 20160412), (key(U2), 20160414)}

    r = got[(key(U1), 20160412)]
    assert (r["source"], r["sleep_records"], r["minutes_asleep"], r["time_in_bed"]) == ("sleepDay", 1, 327, 346)
    assert r["sleep_efficiency"] == pytest.approx(327 / 346)

    # log 10: 6 minutes (4 asleep, 2 of them on 4/12) + log 11: 3 minutes, 3 asleep
    r = got[(key(U1), 20160413)]
    assert (r["source"], r["sleep_records"], r["minutes_asleep"], r["time_in_bed"]) == ("minuteSleep", 2, 7, 9)
    assert r["sleep_efficiency"] == pytest.approx(7 / 9)

    r = got[(key(U2), 20160412)]
    assert (r["source"], r["sleep_records"], r["minutes_asleep"], r["time_in_bed"]) == ("minuteSleep", 1, 2, 4)
    assert r["sleep_efficiency"] == pytest.approx(0.5)

    r = got[(key(U2), 20160414)]
    assert (r["source"], r["minutes_asleep"], r["time_in_bed"], r["sleep_efficiency"]) == ("sleepDay", 0, 0, None)


def test_fact_sleep_one_source(spark, identity, sleep_inputs):
    sleep_day, minute_sleep = sleep_inputs
    assert fact_sleep(None, None, identity) is None
    only_minutes = {(r["user_key"], r["date_key"]): (r["sleep_records"], r["minutes_asleep"], r["time_in_bed"],
                                                     r["source"])
                    for r in fact_sleep(None, minute_sleep, identity).collect()}
    assert only_minutes == {(key(U1), 20160412): (1, 2, 3, "minuteSleep"),
                            (key(U1), 20160413): (2, 7, 9, "minuteSleep"),
                            (key(U2), 20160412): (1, 2, 4, "minuteSleep")}
    only_days = fact_sleep(sleep_day, None, identity).collect()
    assert sorted((r["date_key"], r["source"]) for r in only_days) == [(20160412, "sleepDay"), (20160414, "sleepDay")]


# --- fact_hourly_activity / heart rate --------------------------------------------------------

def test_fact_hourly_activity(spark, identity):
    steps = spark.createDataFrame([(U1, ts("2016-04-12 00:00:00"), 373), (U1, ts("2016-04-12 13:00:00"), 160),
                                   (U2, ts("2016-04-13 23:00:00"), 5)],
                                  "fitbit_id bigint, activity_hour timestamp_ntz, step_total bigint")
    calories = spark.createDataFrame([(U1, ts("2016-04-12 00:00:00"), 81), (U1, ts("2016-04-12 23:00:00"), 48)],
                                     "fitbit_id bigint, activity_hour timestamp_ntz, calories bigint")
    intensities = spark.createDataFrame([(U1, ts("2016-04-12 00:00:00"), 20, 20 / 60)],
                                        "fitbit_id bigint, activity_hour timestamp_ntz, total_intensity bigint, "
                                        "average_intensity double")
    out = fact_hourly_activity({"hourly_steps": steps, "hourly_calories": calories,
                                "hourly_intensities": intensities}, identity)
    assert "fitbit_id" not in out.columns
    got = {(r["user_key"], r["date_key"], r["hour"]): r for r in out.collect()}
    assert set(got) == {(key(U1), 20160412, 0), (key(U1), 20160412, 13), (key(U1), 20160412, 23),
                        (key(U2), 20160413, 23)}
    r = got[(key(U1), 20160412, 0)]
    assert (r["steps"], r["calories"], r["total_intensity"]) == (373, 81, 20)
    assert r["average_intensity"] == pytest.approx(1 / 3)
    r = got[(key(U1), 20160412, 13)]
    assert (r["steps"], r["calories"], r["total_intensity"], r["average_intensity"]) == (160, None, None, None)
    r = got[(key(U1), 20160412, 23)]
    assert (r["steps"], r["calories"]) == (None, 48)
    assert got[(key(U2), 20160413, 23)]["steps"] == 5

    [only] = fact_hourly_activity({"hourly_calories": calories.limit(1)}, identity).collect()
    assert (only["hour"], only["calories"], only["steps"], only["average_intensity"]) == (0, 81, None, None)
    assert fact_hourly_activity({}, identity) is None


def test_fact_heart_rate_hourly(spark, identity):
    readings = [(U1, "2016-04-12 07:00:05", 60), (U1, "2016-04-12 07:30:00", 80), (U1, "2016-04-12 07:59:59", 100),
                (U1, "2016-04-12 08:00:00", 90), (U1, "2016-04-13 07:10:00", 70), (U2, "2016-04-12 07:10:00", 55),
                (U2, "2016-04-12 07:10:05", 56)]
    hr = spark.createDataFrame([(u, ts(t), b) for u, t, b in readings], "fitbit_id bigint, time timestamp_ntz, bpm bigint")
    out = fact_heart_rate_hourly(hr, identity)
    assert "fitbit_id" not in out.columns
    got = {(r["user_key"], r["date_key"], r["hour"]): (r["min_bpm"], r["avg_bpm"], r["max_bpm"], r["readings"])
           for r in out.collect()}
    # plain-Python reference
    groups = defaultdict(list)
    for u, t, b in readings:
        moment = ts(t)
        groups[(key(u), int(moment.strftime("%Y%m%d")), moment.hour)].append(b)
    expected = {k: (min(v), sum(v) / len(v), max(v), len(v)) for k, v in groups.items()}
    assert set(got) == set(expected)
    for k, (lo, avg, hi, n) in expected.items():
        assert got[k][0] == lo and got[k][2] == hi and got[k][3] == n
        assert got[k][1] == pytest.approx(avg)
    assert got[(key(U1), 20160412, 7)] == (60, pytest.approx(80.0), 100, 3)


# --- goal alerts ----------------------------------------------------------------------------

GOAL_HOURS = [
    # U1 4/12, given out of order: cumulative 3000, 7000, 9999, 10000 (reached at 11:00), 15000
    (U1, "2016-04-12 12:00:00", 5000), (U1, "2016-04-12 09:00:00", 4000), (U1, "2016-04-12 08:00:00", 3000),
    (U1, "2016-04-12 11:00:00", 1), (U1, "2016-04-12 10:00:00", 2999),
    # U1 4/13: 9999 in the day: never reached
    (U1, "2016-04-13 10:00:00", 9000), (U1, "2016-04-13 11:00:00", 999),
    # U2: reached in the first hour
    (U2, "2016-04-12 00:00:00", 12000), (U2, "2016-04-12 01:00:00", 500),
    # U3: 6000 + 5000 across midnight: the sum restarts each day, no alert
    (U3, "2016-04-12 23:00:00", 6000), (U3, "2016-04-13 00:00:00", 5000),
]


def _reference_alerts(hours, goal=10000) -> dict:
    """Plain-Python reference: per user-day, the first hour whose cumulative steps reach the goal."""
    days = defaultdict(list)
    for u, t, s in hours:
        days[(u, ts(t).date())].append((ts(t), s))
    expected = {}
    for (u, d), items in days.items():
        total = 0
        for moment, s in sorted(items):
            total += s
            if total >= goal:
                expected[(u, d)] = (moment, total)
                break
    return expected


def test_a_weigh_in_key_names_one_weigh_in_though_users_share_log_ids(spark, identity):
    """The Kaggle weight file gives two users the same LogId (same second, same export): the key is an
    HMAC of the Id and the LogId, the weigh-in's natural key, so no two weigh-ins share it."""
    from fitbit_lakehouse.gold import fact_weight

    shared = 1460937599000
    rows = spark.createDataFrame([(U1, ts("2016-04-17 23:59:59"), 52.6, 22.6, None, True, shared),
                                  (U2, ts("2016-04-17 23:59:59"), 84.0, 27.4, 21.0, False, shared)],
                                 "fitbit_id bigint, logged_at timestamp_ntz, weight_kg double, bmi double, fat double, "
                                 "is_manual_report boolean, log_id bigint")
    got = {r["user_key"]: r["weigh_in_key"] for r in fact_weight(rows, identity, SECRET).collect()}
    want = {key(i): hmac.new(SECRET.encode(), f"{i}:{shared}".encode(), hashlib.sha256).hexdigest()[:32]
            for i in (U1, U2)}
    assert got == want and len(set(got.values())) == 2


def test_goal_reference_by_hand():
    assert _reference_alerts(GOAL_HOURS) == {(U1, date(2016, 4, 12)): (ts("2016-04-12 11:00:00"), 10000),
                                             (U2, date(2016, 4, 12)): (ts("2016-04-12 00:00:00"), 12000)}


def test_goal_alerts_match_reference(spark, identity):
    hours = spark.createDataFrame([(u, ts(t), s_) for u, t, s_ in GOAL_HOURS],
                                  "fitbit_id bigint, activity_hour timestamp_ntz, step_total bigint")
    got = {(r["user_key"], r["date_key"]): (r["reached_at"], r["steps_at_alert"], r["goal_steps"])
           for r in goal_alerts(hours, identity, 10000).collect()}
    expected = {(key(u), int(d.strftime("%Y%m%d"))): (moment, total, 10000)
                for (u, d), (moment, total) in _reference_alerts(GOAL_HOURS).items()}
    assert got == expected


def test_goal_alerts_follow_the_goal_setting(spark, identity):
    hours = spark.createDataFrame([(U1, ts("2016-04-12 08:00:00"), 400), (U1, ts("2016-04-12 09:00:00"), 700)],
                                  "fitbit_id bigint, activity_hour timestamp_ntz, step_total bigint")
    [row] = goal_alerts(hours, identity, 1000).collect()
    assert (row["reached_at"], row["steps_at_alert"], row["goal_steps"]) == (ts("2016-04-12 09:00:00"), 1100, 1000)


# --- which user-days a change bears on ------------------------------------------------------

def test_user_days_are_the_days_the_rows_lie_on(spark):
    rows = spark.createDataFrame([(U1, ts("2016-04-12 23:58:00")), (U1, ts("2016-04-13 00:01:00"))],
                                 "fitbit_id bigint, sleep_minute timestamp_ntz")
    got = sorted(tuple(r) for r in user_days(rows, "minute_sleep").collect())
    assert got == [(U1, date(2016, 4, 12)), (U1, date(2016, 4, 13))]
    hourly = spark.createDataFrame([(U1, ts("2016-04-12 23:00:00"))], "fitbit_id bigint, activity_hour timestamp_ntz")
    assert [tuple(r) for r in user_days(hourly, "hourly_steps").collect()] == [(U1, date(2016, 4, 12))]


def test_a_scope_ending_on_a_night_reads_that_nights_log_whole(spark, base_settings, identity, tmp_path):
    """A scope whose last day is the evening a sleep log starts (a later sync of that day's activity, a
    backfill TO that day): the log ends the next morning, so it is not that day's sleep, and the day's
    figures hold only the logs that end on it (CONTRACT: time in bed = all minutes of the logs ending
    that day)."""
    from fitbit_lakehouse.tables import Lake

    def minutes(log_id: int, start: str, count: int, asleep_every: int) -> list[tuple]:
        first = ts(start)
        return [(U1, first + timedelta(minutes=i), 1 if i % asleep_every else 2, log_id) for i in range(count)]

    nap = minutes(11, "2016-04-12 14:00:00", 40, 4)          # ends on the 12th
    night = minutes(12, "2016-04-12 22:30:00", 9 * 60, 5)    # the 12th, 22:30 -> the 13th, 07:29
    lake = Lake(spark, base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")}))
    spark.createDataFrame(nap + night, "fitbit_id bigint, sleep_minute timestamp_ntz, value int, log_id bigint") \
        .write.format("delta").save(lake.path("silver", "minute_sleep"))

    def by_day(scope: Scope) -> dict:
        derived = fact_sleep(None, scope.silver(lake, "minute_sleep"), identity).collect()
        return {r["date_key"]: (r["sleep_records"], r["minutes_asleep"], r["time_in_bed"]) for r in derived}

    nap_day = (1, sum(1 for m in nap if m[2] == 1), len(nap))
    night_day = (1, sum(1 for m in night if m[2] == 1), len(night))
    assert by_day(Scope([(U1, date(2016, 4, 12))])).get(20160412) == nap_day
    assert by_day(Scope([(U1, date(2016, 4, 12)), (U1, date(2016, 4, 13))])) == {20160412: nap_day, 20160413: night_day}


def test_a_sleep_log_that_grows_past_midnight_moves_to_the_day_it_now_ends(spark, base_settings, tmp_path):
    """A later sync adds the rest of a night whose log had ended before midnight: on a real lake, gold's
    incremental run (silver's change feed) moves the log's row to the day it now ends, and the day it
    ended on before keeps nothing of it (CONTRACT: time in bed = all minutes of the logs ending that day)."""
    from fitbit_lakehouse.gold import run_gold
    from fitbit_lakehouse.privacy import user_key_secret
    from fitbit_lakehouse.silver import IDENTITY
    from fitbit_lakehouse.tables import Lake

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")})
    lake = Lake(spark, settings)
    lake.append(spark.createDataFrame([(U1, user_key(U1, user_key_secret(settings)))],
                                      "fitbit_id bigint, user_key string"), "silver", IDENTITY)

    def minutes(start: str, count: int) -> list[tuple]:   # one log; every fifth minute restless
        return [(U1, ts(start) + timedelta(minutes=i), 2 if i % 5 == 0 else 1, 7) for i in range(count)]

    def add(rows: list[tuple]) -> None:
        lake.append(spark.createDataFrame(rows, "fitbit_id bigint, sleep_minute timestamp_ntz, value int, log_id bigint"),
                    "silver", "minute_sleep", properties={"delta.enableChangeDataFeed": "true"})

    def gold_by_day() -> dict:
        return {r["date_key"]: (r["sleep_records"], r["minutes_asleep"], r["time_in_bed"])
                for r in lake.read("gold", "fact_sleep").collect()}

    def one_log(rows: list[tuple]) -> tuple:
        return 1, sum(1 for r in rows if r[2] == 1), len(rows)

    evening, night = minutes("2016-04-11 23:00:00", 60), minutes("2016-04-12 00:00:00", 7 * 60)
    add(evening)
    run_gold(spark, settings)
    assert gold_by_day() == {20160411: one_log(evening)}
    add(night)
    assert run_gold(spark, settings)["user_days"] == 2   # both days of the log, read from the change feed
    assert gold_by_day() == {20160412: one_log(evening + night)}


def test_gold_built_with_other_kpi_settings_is_rebuilt_whole(spark, base_settings, tmp_path, caplog):
    """A goal, weight or segment changed in conf/ (or FITBIT_SETTINGS) after gold was built: the next run,
    though nothing new came in, rebuilds every user-day with the new figures, instead of keeping the old
    ones (or mixing them with new ones on the days that happen to change)."""
    import logging

    from fitbit_lakehouse.gold import run_gold
    from fitbit_lakehouse.privacy import user_key_secret
    from fitbit_lakehouse.silver import IDENTITY
    from fitbit_lakehouse.tables import Lake

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")})
    lake = Lake(spark, settings)
    lake.append(spark.createDataFrame([(U1, user_key(U1, user_key_secret(settings)))],
                                      "fitbit_id bigint, user_key string"), "silver", IDENTITY)
    # (day, steps, very, fairly, lightly, sedentary): active 300 and 200 minutes, mvpa 40 and 10
    days = [(date(2016, 4, 12), 12000, 25, 15, 260, 700), (date(2016, 4, 13), 5000, 5, 5, 190, 900)]

    def add(rows: list[tuple]) -> None:
        lake.append(spark.createDataFrame([(U1, d, steps, 8.0, 2000, v, f, li, se) for d, steps, v, f, li, se in rows],
                                          "fitbit_id bigint, activity_date date, total_steps bigint, total_distance "
                                          "double, calories bigint, very_active_minutes bigint, fairly_active_minutes "
                                          "bigint, lightly_active_minutes bigint, sedentary_minutes bigint"),
                    "silver", "daily_activity", properties={"delta.enableChangeDataFeed": "true"})

    add(days)

    def scores() -> dict:
        return {r["date_key"]: (round(r["activity_score"], 6), r["daily_segment"])
                for r in lake.read("gold", "kpi_daily_wellness").collect()}

    def by_hand(steps_goal: float, segments: list[tuple[str, int]]) -> dict:   # CONTRACT's activity score
        out = {}
        for d, steps, very, fairly, lightly, _ in days:
            active = very + fairly + lightly
            score = 0.5 * min(steps / steps_goal, 1) + 0.5 * min((very + fairly) / 30, 1)
            out[int(d.strftime("%Y%m%d"))] = (round(score, 6), next(n for n, m in segments if active >= m))
        return out

    run_gold(spark, settings)
    assert scores() == by_hand(10000, [("High", 270), ("Medium", 180), ("Low", 0)])
    assert run_gold(spark, settings)["user_days"] == 0   # nothing new, same settings: nothing to do

    later = [(date(2016, 4, 14), 9000, 20, 20, 200, 800)]   # a day silver took since gold last ran
    add(later)
    days += later
    changed = settings.with_overrides(**{"kpi.activity": {"steps_goal": 20000}, "kpi.segments": [
        {"name": "High", "min_active_minutes": 250}, {"name": "Low", "min_active_minutes": 0}]})
    with caplog.at_level(logging.WARNING, logger="fitbit_lakehouse.gold"):
        assert run_gold(spark, changed)["user_days"] == len(days)
    assert scores() == by_hand(20000, [("High", 250), ("Low", 0)])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "built with other KPI settings (kpi.activity.steps_goal: 10000 -> 20000, kpi.segments: " in said
    assert run_gold(spark, changed)["user_days"] == 0   # rebuilt once, and silver's versions noted with it

    # a backfill of days gold holds as they follow from silver: rebuilt, compared, and nothing written (it
    # was a MERGE of every row: a new version of each table, files rewritten, readers told of a change)
    versions = {t: lake.version("gold", t) for t in ("fact_daily_activity", "kpi_daily_wellness", "dim_user")}
    assert run_gold(spark, changed, date(2016, 4, 12), date(2016, 4, 14))["user_days"] == len(days)
    assert {t: lake.version("gold", t) for t in versions} == versions
    assert scores() == by_hand(20000, [("High", 250), ("Low", 0)])

    from fitbit_lakehouse.gold import NothingToBuild, require_gold_of

    require_gold_of(changed)   # what insights asks before it reports (and logs the KPI settings to MLflow)
    with pytest.raises(NothingToBuild, match=r"^gold was built with other KPI settings \(kpi.activity.steps_goal: "
                                             r"20000 -> 10000, .*\): run 04_gold with these first"):
        require_gold_of(settings)


def test_gold_before_any_record_says_where_to_start(spark, base_settings, tmp_path):
    """A pipeline job run on a fresh lake before the producer: bronze and silver take nothing, and gold
    says that the CSVs have to be sent first (not "run 03_silver", which has just run)."""
    from fitbit_lakehouse.gold import NothingToBuild, run_gold
    from fitbit_lakehouse.tables import Lake

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")})
    message = (f"No Fitbit record in {tmp_path / 'lake'} yet: bronze has received none from the topic "
               f"{settings.events_topic}. Send the CSVs first (make run, or the fitbit_producer job), then bronze "
               f"and silver.")
    with pytest.raises(NothingToBuild) as failure:
        run_gold(spark, settings)
    assert str(failure.value) == message
    Lake(spark, settings).append(spark.createDataFrame([], "value string"), "bronze", "events")
    with pytest.raises(NothingToBuild, match="^No Fitbit record in .* yet: bronze has received none"):
        run_gold(spark, settings)


def test_two_sleep_day_rows_on_one_day_keep_the_newer(spark):
    # the one received later has the earlier time of day and the smaller figures: only when it was
    # received picks it
    rows = spark.createDataFrame([
        (U1, ts("2016-04-12 09:30:00"), 2, 350, 400, ts("2016-05-01 10:00:00"), 0, 9, 0),
        (U1, ts("2016-04-12 00:00:00"), 1, 300, 320, ts("2016-05-01 11:00:00"), 0, 5, 0),   # received later
    ], SLEEP_DAY_SCHEMA + ", _kafka_timestamp timestamp_ntz, _kafka_partition int, _kafka_offset bigint, "
                          "_record_index int")
    [row] = sleep_days(rows).collect()
    assert (row["sleep_records"], row["minutes_asleep"], row["time_in_bed"]) == (1, 300, 320)


# --- dim_date ---------------------------------------------------------------------------------

def test_dim_date(spark):
    rows = sorted(dim_date(spark, date(2015, 12, 31), date(2016, 1, 4)).collect(), key=lambda r: r["date_key"])
    first, last = date(2015, 12, 31), date(2016, 1, 4)
    expected_days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    assert [r["date"] for r in rows] == expected_days
    for r, d in zip(rows, expected_days):
        assert r["date_key"] == d.year * 10000 + d.month * 100 + d.day
        assert r["day_of_week"] == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                    "Sunday"][d.weekday()]
        assert r["is_weekend"] is (d.weekday() >= 5)
        assert r["iso_week"] == d.isocalendar()[1]
        assert (r["month"], r["year"]) == (d.month, d.year)
    # by hand: 2015-12-31 Thu, 2016-01-01 Fri (ISO week 53), 01-02 Sat, 01-03 Sun, 01-04 Mon (week 1)
    assert [(r["day_of_week"], r["is_weekend"], r["iso_week"]) for r in rows] == [
        ("Thursday", False, 53), ("Friday", False, 53), ("Saturday", True, 53), ("Sunday", True, 53),
        ("Monday", False, 1)]


def test_make_alerts_names_the_hour_whose_steps_reached_the_goal():
    """reached_at is the start of that hour; its steps count to its end. "12,000 steps by 11:00" said
    the day had them at 11:00, when it had 9,000."""
    from fitbit_lakehouse.alerts import alert_line

    alert = {"date_key": 20160412, "user_key": "0123456789abcdef", "reached_at": "2016-04-12T11:00:00",
             "steps_at_alert": 12000, "goal_steps": 10000}
    assert alert_line(alert) == ("GOAL 20160412 user 0123456789ab: 12,000 steps in the hour 11:00-12:00 "
                                 "(goal 10,000)")
    assert "in the hour 23:00-24:00" in alert_line({**alert, "reached_at": "2016-04-12T23:00:00"})
