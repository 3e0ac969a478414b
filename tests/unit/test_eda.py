"""The EDA notebook's figures (fitbit_lakehouse.eda), on tiny silver-shaped frames."""
from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from fitbit_lakehouse import eda


def _daily():
    """Two users, Mon 11 .. Wed 13 Apr 2016; user 2 did not wear the tracker on Tuesday."""
    return pd.DataFrame({
        "fitbit_id": [1, 1, 1, 2, 2],
        "activity_date": [date(2016, 4, 11), date(2016, 4, 12), date(2016, 4, 13), date(2016, 4, 11),
                          date(2016, 4, 12)],
        "total_steps": [1000, 3000, 5000, 2000, 0],
        "very_active_minutes": [10, 20, 30, 0, 0],
        "fairly_active_minutes": [10, 20, 30, 0, 0],
        "lightly_active_minutes": [100, 200, 300, 60, 0],
        "sedentary_minutes": [1320, 800, 1080, 1380, 1440]})


def _sleep():
    return pd.DataFrame({"fitbit_id": [1], "sleep_day": [datetime(2016, 4, 12)], "total_minutes_asleep": [400],
                         "total_time_in_bed": [420]})


def test_time_column_of_silver_tables():
    assert eda.time_column("daily_activity") == "activity_date"
    assert eda.time_column("minute_steps") == "activity_minute"
    assert eda.time_column("weight_log") == "logged_at"


def test_usage_by_weekday():
    table = eda.usage_by_weekday(_daily())
    assert list(table.index) == eda.WEEKDAYS
    assert table.loc["Tuesday", "user_days"] == 2 and table.loc["Tuesday", "worn_days"] == 1
    assert table.loc["Tuesday", "share_worn"] == pytest.approx(0.5)
    assert table.loc["Tuesday", "mean_steps_worn_day"] == pytest.approx(3000)     # the unworn day left out
    assert table.loc["Monday", "mean_steps_worn_day"] == pytest.approx(1500)
    assert table.loc["Friday", "user_days"] == 0 and pd.isna(table.loc["Friday", "share_worn"])


def test_usage_by_hour():
    hourly = pd.DataFrame({"fitbit_id": [1, 1, 2],
                           "activity_hour": pd.to_datetime(["2016-04-11 08:00", "2016-04-12 08:00", "2016-04-11 18:00"]),
                           "step_total": [100, 300, 600]})
    table = eda.usage_by_hour(hourly)
    assert list(table.index) == list(range(24))
    assert table.loc[8, "mean_steps"] == 200 and table.loc[8, "user_hours"] == 2
    assert table.loc[18, "share_of_steps"] == pytest.approx(0.6) and table.loc[3, "user_hours"] == 0


def test_logging_users():
    weight = pd.DataFrame({"fitbit_id": [2, 2, 2], "is_manual_report": [True, False, True]})
    table = eda.logging_users(_daily(), _sleep(), weight)
    assert table["users"].to_dict() == {"activity (daily)": 2, "sleep": 1, "weight": 1}
    assert table.loc["sleep", "share_of_users"] == pytest.approx(0.5)
    assert table.loc["weight", "records_per_user"] == pytest.approx(3)
    assert eda.weight_entry_kinds(weight) == {"weigh_ins": 3, "manual": 2, "share_manual": pytest.approx(2 / 3)}
    none = eda.logging_users(_daily(), None, None)
    assert none.loc["weight", "users"] == 0 and none.loc["weight", "share_of_users"] == 0
    assert eda.weight_entry_kinds(None)["share_manual"] is None


def test_wear_time():
    wear = eda.wear_time(_daily(), _sleep(), 1440)
    assert wear["recorded_minutes"].tolist() == [1440, 1040, 1440, 1440, 1440]
    assert wear["full_wear"].tolist() == [True, False, True, True, True]
    assert wear["sleep_logged"].tolist() == [False, True, False, False, False]
    s = eda.wear_summary(wear)
    assert s["full_wear_days"] == 4 and s["share_full_wear"] == pytest.approx(0.8) and s["zero_step_days"] == 1
    assert s["mean_minutes_with_sleep"] == 1040 and s["mean_minutes_without_sleep"] == 1440
    by_date = eda.wear_by_date(wear)
    assert by_date["users"].tolist() == [2, 2, 1]
    assert eda.wear_summary(wear.iloc[:0])["share_full_wear"] is None


def test_rows_on_day_per_table_and_source_file():
    day = date(2016, 4, 12)
    daily = _daily().assign(_source_file=["m1/dailyActivity_merged.csv", "m2/dailyActivity_merged.csv",
                                          "m2/dailyActivity_merged.csv", "m1/dailyActivity_merged.csv",
                                          "m1/dailyActivity_merged.csv"])
    hourly = pd.DataFrame({"fitbit_id": [1, 1, 1],
                           "activity_hour": pd.to_datetime(["2016-04-12 00:00", "2016-04-12 23:00", "2016-04-13 00:00"]),
                           "_source_file": ["m2/hourlySteps_merged.csv"] * 3})
    rows = eda.rows_on_day({"daily_activity": daily, "hourly_steps": hourly, "sleep_day": None}, day)
    assert rows.to_dict("records") == [
        {"table": "daily_activity", "source_file": "m1/dailyActivity_merged.csv", "rows": 1, "users": 1},
        {"table": "daily_activity", "source_file": "m2/dailyActivity_merged.csv", "rows": 1, "users": 1},
        {"table": "hourly_steps", "source_file": "m2/hourlySteps_merged.csv", "rows": 2, "users": 1}]
    assert eda.rows_on_day({}, day).empty


def test_day_filter_reads_one_day():
    assert eda.day_filter("daily_activity", "2016-04-12") == [("activity_date", "=", date(2016, 4, 12))]
    assert eda.day_filter("hourly_steps", date(2016, 4, 12)) == [
        ("activity_hour", ">=", datetime(2016, 4, 12)), ("activity_hour", "<", datetime(2016, 4, 13))]


def test_read_silver_missing_table_is_none(tmp_path):
    assert eda.read_silver(tmp_path, "daily_activity") is None
