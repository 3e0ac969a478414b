"""kpi_summary: the headline figures, on a tiny pandas frame (no Spark)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from fitbit_lakehouse.insights import kpi_summary


def test_kpi_summary():
    kpi = pd.DataFrame({
        "user_key": ["a", "a", "b", "c"],
        "total_steps": [10000, 5000, 3001, 2001],
        "active_minutes": [300, 200, 100, 182],
        "wellness_score": [97.5, 56.7, None, None],
        "sleep_efficiency": [0.9, 0.8, None, 0.7],
        "daily_segment": ["High", "Medium", "Low", "Medium"],
    })
    users = pd.DataFrame({"user_key": ["a", "b", "c", "d"],
                          "engagement_segment": ["Medium", "Low", "Medium", "Unknown"]})
    s = kpi_summary(kpi, users)
    assert s["valid_user_days"] == 4
    assert s["users"] == 4
    assert s["mean_daily_steps"] == pytest.approx(5000.5)          # 20002 / 4
    assert s["mean_active_minutes"] == pytest.approx(195.5)        # 782 / 4
    assert s["days_with_wellness_score"] == 2
    assert s["mean_wellness_score"] == pytest.approx(77.1)         # (97.5 + 56.7) / 2
    assert s["mean_sleep_efficiency"] == pytest.approx(0.8)        # (0.9 + 0.8 + 0.7) / 3, nulls skipped
    assert s["daily_segments"] == {"Medium": 2, "High": 1, "Low": 1}
    assert s["engagement_segments"] == {"Medium": 2, "Low": 1, "Unknown": 1}
    for name in ("valid_user_days", "users", "days_with_wellness_score"):
        assert type(s[name]) is int
    for name in ("mean_daily_steps", "mean_active_minutes", "mean_wellness_score", "mean_sleep_efficiency"):
        assert type(s[name]) is float


def test_kpi_summary_one_decimal():
    kpi = pd.DataFrame({"total_steps": [1, 2, 2], "active_minutes": [10, 10, 11], "wellness_score": [50.0, 50.0, 51.0],
                        "sleep_efficiency": [1 / 3, 1 / 3, 1 / 3], "daily_segment": ["Low"] * 3})
    s = kpi_summary(kpi, pd.DataFrame({"engagement_segment": ["Low"]}))
    assert s["mean_daily_steps"] == pytest.approx(1.7)             # 5/3 = 1.666..
    assert s["mean_active_minutes"] == pytest.approx(10.3)         # 31/3
    assert s["mean_wellness_score"] == pytest.approx(50.3)
    assert s["mean_sleep_efficiency"] == pytest.approx(0.333)


def test_kpi_summary_no_sleep():
    kpi = pd.DataFrame({"total_steps": [4000], "active_minutes": [50], "wellness_score": [math.nan],
                        "sleep_efficiency": [math.nan], "daily_segment": ["Low"]})
    s = kpi_summary(kpi, pd.DataFrame({"engagement_segment": ["Low"]}))
    assert s["days_with_wellness_score"] == 0
    assert s["mean_wellness_score"] is None and s["mean_sleep_efficiency"] is None
    assert s["mean_daily_steps"] == pytest.approx(4000.0)


def test_kpi_summary_empty():
    kpi = pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("total_steps", "int64"), ("active_minutes", "int64"), ("wellness_score", "float64"),
        ("sleep_efficiency", "float64"), ("daily_segment", "object"))})
    users = pd.DataFrame({"engagement_segment": pd.Series(dtype="object")})
    s = kpi_summary(kpi, users)
    assert s == {"valid_user_days": 0, "users": 0, "mean_daily_steps": None, "mean_active_minutes": None,
                 "days_with_wellness_score": 0, "mean_wellness_score": None, "mean_sleep_efficiency": None,
                 "daily_segments": {}, "engagement_segments": {}}
