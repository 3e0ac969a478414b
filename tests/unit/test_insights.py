"""The report's analyses and rendering on tiny pandas frames (no Spark), and the whole insights step
on a tiny lake written with delta-rs."""
from __future__ import annotations

import base64
import math
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from fitbit_lakehouse import insights, report
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.insights import (
    InsightsConfig, analyse, hourly_pattern, kpi_summary, on_valid_days, pearson, quarantine_by_reason, read_quality,
    read_trend, recent_alerts, reconciliation_frame, segment_counts, segment_profiles, sleep_efficiency_analysis,
    sedentary_sleep_pairs, strength, user_features, weekday_hour_steps, weekday_pattern, wellness_trend,
    with_calendar)


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


# --- the report's analyses, on tiny frames ------------------------------------------------

CONFIG = InsightsConfig(segment_cutoffs=(("High", 270), ("Medium", 180), ("Low", 0)), unknown_segment="Unknown",
                        recent_alerts=2, min_pairs_for_correlation=3,
                        correlation_bands=(("strong", 0.7), ("moderate", 0.4), ("weak", 0.2), ("negligible", 0.0)),
                        low_sleep_efficiency=0.85)
ORDER = CONFIG.segment_order


def _dim_date(first="2016-04-11", last="2016-04-17"):
    days = pd.date_range(first, last, freq="D")
    return pd.DataFrame({"date_key": days.strftime("%Y%m%d").astype(int), "date": days.date,
                         "day_of_week": days.day_name()})


def _tables():
    """Two users over a week (Mon 11 .. Sun 17 Apr 2016); user b has no sleep, 13 Apr nobody's score."""
    daily = pd.DataFrame({
        "user_key": ["a", "a", "a", "a", "b", "b", "b"],
        "date_key": [20160411, 20160412, 20160413, 20160414, 20160411, 20160412, 20160417],
        "total_steps": [10000, 8000, 6000, 0, 2000, 3000, 4000],
        "calories": [2500, 2300, 2100, 1500, 1600, 1700, 1800],
        "active_minutes": [300, 280, 260, 0, 100, 120, 140],
        "sedentary_minutes": [600, 700, 800, 1440, 1000, 1100, 1200],
        "is_valid_day": [True, True, True, False, True, True, True]})
    sleep = pd.DataFrame({"user_key": ["a", "a", "a"], "date_key": [20160411, 20160412, 20160414],
                          "minutes_asleep": [420, 380, 300], "time_in_bed": [450, 400, 400],
                          "sleep_efficiency": [420 / 450, 380 / 400, 300 / 400]})
    valid = daily[daily["is_valid_day"]]
    kpi = valid[["user_key", "date_key", "total_steps", "active_minutes"]].merge(
        sleep[["user_key", "date_key", "sleep_efficiency"]], how="left")
    kpi["wellness_score"] = kpi["sleep_efficiency"].map(lambda e: None if pd.isna(e) else round(100 * e, 1))
    kpi["daily_segment"] = ["High", "High", "Low", "Low", "Low", "Low"][:len(kpi)]
    users = pd.DataFrame({"user_key": ["a", "b", "c"], "engagement_segment": ["High", "Low", "Unknown"]})
    hourly = pd.DataFrame({"user_key": ["a", "a", "a", "b", "a"], "date_key": [20160411, 20160411, 20160412,
                                                                              20160417, 20160414],
                           "hour": [8, 18, 8, 8, 8], "steps": [100, 900, 300, 500, 0]})
    alerts = pd.DataFrame({"user_key": ["a", "a", "b"], "date_key": [20160411, 20160412, 20160417],
                           "goal_steps": [10000] * 3,
                           "reached_at": pd.to_datetime(["2016-04-11 18:00", "2016-04-12 20:00", "2016-04-17 09:00"]),
                           "steps_at_alert": [10100, 10200, 10050]})
    quarantine = pd.DataFrame({"target_table": ["daily_activity", None],
                               "reasons": [["negative_value:total_steps", "daily_minutes_sum_above_max"],
                                           ["unparseable_event"]], "records": [2, 1]})
    dates = _dim_date()
    return {"kpi": with_calendar(kpi, dates), "users": users, "daily": daily, "sleep": sleep,
            "hourly": with_calendar(hourly, dates), "alerts": alerts, "quarantine": quarantine}


def test_with_calendar_adds_date_and_weekday():
    frame = with_calendar(pd.DataFrame({"date_key": [20160412, 20160417]}), _dim_date())
    assert frame["date"].tolist() == [pd.Timestamp("2016-04-12"), pd.Timestamp("2016-04-17")]
    assert frame["day_of_week"].tolist() == ["Tuesday", "Sunday"]


def test_wellness_trend_has_a_row_for_every_day_and_nan_for_days_without_score():
    trend = wellness_trend(_tables()["kpi"])
    assert list(trend.index) == list(pd.date_range("2016-04-11", "2016-04-17", freq="D"))
    assert trend.loc["2016-04-11", "wellness_score"] == pytest.approx(93.3)
    assert trend.loc["2016-04-11", "scored_users"] == 1
    assert trend["wellness_score"].isna().sum() == 5          # 13 .. 17 Apr: no sleep, no score
    reading = read_trend(trend)
    assert "5 of 7 days have no score" in reading and "Mon 11 Apr 2016" in reading


def test_wellness_trend_empty():
    kpi = pd.DataFrame({"user_key": [], "date": pd.to_datetime([]), "wellness_score": []})
    trend = wellness_trend(kpi)
    assert trend.empty and "No day has a wellness score" in read_trend(trend)


def test_segment_counts_in_rule_order_unknown_only_when_present():
    users = pd.DataFrame({"engagement_segment": ["Low", "High", "Low"]})
    assert segment_counts(users, ORDER).to_dict() == {"High": 1, "Medium": 0, "Low": 2}
    users = pd.DataFrame({"engagement_segment": ["Unknown", "High"]})
    assert list(segment_counts(users, ORDER).index) == ["High", "Medium", "Low", "Unknown"]


def test_hourly_patterns_count_valid_days_only():
    t = _tables()
    hourly = on_valid_days(t["hourly"], t["kpi"])
    assert len(hourly) == 4                                   # 14 Apr (0 steps) was not a valid day
    by_hour = hourly_pattern(hourly)
    assert list(by_hour.index) == list(range(24))
    assert by_hour[8] == pytest.approx((100 + 300 + 500) / 3) and by_hour[18] == 900 and pd.isna(by_hour[3])
    grid = weekday_hour_steps(hourly)
    assert grid.shape == (7, 24) and list(grid.index) == insights.WEEKDAYS
    assert grid.loc["Sunday", 8] == 500 and grid.loc["Tuesday", 8] == 300 and grid.loc["Monday", 18] == 900
    assert pd.isna(grid.loc["Wednesday", 8])
    assert "Monday 18:00" in insights.read_heatmap(grid)


def test_weekday_pattern_over_valid_days():
    pattern = weekday_pattern(_tables()["kpi"])
    assert list(pattern.index) == insights.WEEKDAYS
    assert pattern["Monday"] == pytest.approx(6000) and pattern["Sunday"] == 4000 and pd.isna(pattern["Friday"])
    assert insights.read_weekday(pattern) == ("Most steps on Monday (mean 6,000 a valid day), fewest on "
                                              "Sunday (4,000): 50% more.")


def test_pearson_r_and_n_over_complete_pairs():
    x = pd.Series([1, 2, 3, 4, None])
    assert pearson(x, pd.Series([2, 4, 6, 8, 10]), 3) == {"r": pytest.approx(1.0), "n": 4}
    assert pearson(x, pd.Series([8, 6, 4, 2, 0]), 3)["r"] == pytest.approx(-1.0)
    assert pearson(pd.Series([1, 2]), pd.Series([1, 3]), 3) == {"r": None, "n": 2}      # too few pairs
    assert pearson(pd.Series([1, 2, 3]), pd.Series([5, 5, 5]), 3)["r"] is None           # y does not vary
    r = pearson(pd.Series([1, 2, 3, 4]), pd.Series([1, 3, 2, 4]), 3)["r"]
    assert r == pytest.approx(pd.Series([1, 2, 3, 4]).corr(pd.Series([1, 3, 2, 4])))


def test_strength_words_follow_the_bands():
    bands = CONFIG.correlation_bands
    assert [strength(r, bands) for r in (0.93, -0.59, 0.25, 0.05)] == ["strong", "moderate", "weak", "negligible"]


def test_sleep_efficiency_analysis():
    sleep = pd.DataFrame({"user_key": ["a"] * 4, "date_key": [1, 2, 3, 4], "minutes_asleep": [400, 300, 200, 10],
                          "time_in_bed": [420, 400, 210, 0]})
    a = sleep_efficiency_analysis(sleep, 3, 0.85)
    assert len(a["nights"]) == 3                                # no time in bed: not a night
    assert a["asleep_vs_in_bed"]["n"] == 3 and a["asleep_vs_in_bed"]["r"] > 0.9
    assert a["low_nights"] == 1                                 # 300 / 400 = 0.75
    assert a["mean_efficiency"] == pytest.approx((400 / 420 + 0.75 + 200 / 210) / 3)
    reading = insights.read_sleep(a, CONFIG.correlation_bands)
    assert "n = 3 nights" in reading and "1 nights (33%) below 85%" in reading


def test_sedentary_sleep_pairs_valid_days_with_sleep():
    t = _tables()
    pairs = sedentary_sleep_pairs(t["daily"], t["sleep"])
    assert sorted(pairs["date_key"]) == [20160411, 20160412]    # 14 Apr has sleep but is not a valid day
    assert pairs["sedentary_minutes"].tolist() == [600, 700]


def test_user_features_and_segment_profiles():
    t = _tables()
    features = user_features(t["daily"], t["sleep"], t["kpi"])
    assert list(features.index) == ["a", "b"]                   # c has no valid day
    assert features.loc["a", "valid_days"] == 3 and features.loc["a", "mean_daily_steps"] == pytest.approx(8000)
    assert features.loc["a", "sleep_days"] == 3                 # all nights logged, valid day or not
    assert features.loc["a", "mean_minutes_asleep"] == pytest.approx(1100 / 3)
    assert features.loc["b", "sleep_days"] == 0 and pd.isna(features.loc["b", "mean_minutes_asleep"])
    profiles = segment_profiles(features, t["users"], ORDER)
    assert list(profiles.index) == ["High", "Low", "Unknown"]
    assert profiles.loc["High", "mean_daily_steps"] == pytest.approx(8000)
    assert profiles.loc["Low", "users_logging_sleep"] == 0
    assert profiles.loc["Unknown", "users"] == 1 and pd.isna(profiles.loc["Unknown", "mean_daily_steps"])
    assert "steps a day High 8,000, Low 3,000" in insights.read_profiles(profiles)


def test_recent_alerts_newest_first():
    recent = recent_alerts(_tables()["alerts"], 2)
    assert recent["date_key"].tolist() == [20160417, 20160412]
    shown = insights.display_alerts(recent)
    assert shown["goal reached in"].tolist() == ["09:00-10:00", "20:00-21:00"] and shown["day"][0] == "Sun 17 Apr 2016"
    assert insights.read_alerts(_tables()["alerts"]).startswith("3 user-days reached the 10,000-step goal (2 users)")


def test_quarantine_by_reason_counts_each_reason_of_a_record():
    by_reason = quarantine_by_reason(_tables()["quarantine"])
    assert by_reason.to_dict("records") == [
        {"reason": "daily_minutes_sum_above_max", "table": "daily_activity", "records": 2},
        {"reason": "negative_value:total_steps", "table": "daily_activity", "records": 2},
        {"reason": "unparseable_event", "table": insights.UNKNOWN_TABLE, "records": 1}]
    one_a_row = pd.DataFrame({"target_table": ["sleep_day", "sleep_day"], "reasons": [["x"], ["x"]]})
    assert quarantine_by_reason(one_a_row)["records"].tolist() == [2]
    assert quarantine_by_reason(pd.DataFrame({"target_table": [], "reasons": []})).empty


def test_read_quality_names_a_broken_reconciliation():
    checks = reconciliation_frame([{"table": "daily_activity", "records_in": 5, "silver_rows": 4, "duplicates": 0,
                                    "quarantined": 0, "holds": False},
                                   {"table": "sleep_day", "records_in": 2, "silver_rows": 2, "duplicates": 0,
                                    "quarantined": 0, "holds": True}])
    empty = quarantine_by_reason(pd.DataFrame({"target_table": [], "reasons": []}))
    assert read_quality(empty, 0, checks) == ("No record failed validation; the reconciliation is BROKEN for "
                                              "daily_activity.")
    assert "holds for all 1 tables" in read_quality(empty, 0, checks[checks["holds"]])


def _agreement():
    from fitbit_lakehouse.engagement_model import segment_agreement

    rule = pd.Series({"a": "High", "b": "Low", "c": "Unknown"})
    return segment_agreement(rule, pd.Series({"a": 1, "b": 0}), ORDER)


def test_analyse_every_section_with_a_reading_from_the_data():
    recon = [{"table": "daily_activity", "records_in": 7, "silver_rows": 5, "duplicates": 0, "quarantined": 2,
              "holds": True}]
    summary, findings = analyse(_tables(), CONFIG, recon, _agreement())
    ids = [f.id for f in findings]
    assert ids == ["kpi-tiles", "wellness-trend", "engagement-segments", "hourly-pattern", "weekday-pattern",
                   "weekday-hour-heatmap", "sleep-efficiency", "steps-vs-calories", "sedentary-vs-sleep",
                   "segment-profiles", "goal-alerts", "data-quality", "learned-segments"]
    readings = {f.id: f.reading for f in findings}
    assert summary["valid_user_days"] == 6
    assert "n = 2 valid days with sleep" in readings["sedentary-vs-sleep"]      # too few for r
    assert "Pearson r = +" in readings["steps-vs-calories"] and "n = 6 valid days" in readings["steps-vs-calories"]
    assert readings["data-quality"].startswith("3 records quarantined")
    assert "agree with the rule segment for 2 of 2 users (100%)" in readings["learned-segments"]


def test_analyse_empty_lake_says_so():
    empty = {name: frame.iloc[:0] for name, frame in _tables().items()}
    summary, findings = analyse(empty, CONFIG, [], None, "0 users with a valid day")
    readings = {f.id: f.reading for f in findings}
    assert readings["wellness-trend"].startswith("No day has a wellness score")
    assert readings["sleep-efficiency"] == "No night with sleep logged."
    assert readings["learned-segments"] == "No learned segments this run: 0 users with a valid day."


def _png_sources(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def test_html_report_is_self_contained_escaped_and_printable(tmp_path):
    tables = _tables()
    tables["users"] = pd.DataFrame({"user_key": ["a", "b"], "engagement_segment": ["High", "<script>x</script>"]})
    summary, findings = analyse(tables, CONFIG, [], _agreement())
    settings = load_settings().with_overrides(**{"paths.lake_dir": str(tmp_path)})
    meta = {"generated": datetime(2016, 5, 1, 12), "lake": "/lake", "mlflow_run_id": "r1",
            "model": {"name": "m", "version": "3", "uri": "models:/m/3"}, "versions": {"gold.dim_user": 4}}
    written = report.write_reports(summary, findings, meta, tmp_path, settings)
    page = written.html.read_text()
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert "@media print" in page and "break-inside: avoid" in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)              # nothing loaded from elsewhere
    sources = _png_sources(page)
    assert len(sources) == len(written.charts) >= 7
    for data in sources:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert page.count("<img ") == len(re.findall(r'<img [^>]*alt="[^"]+"', page))
    section_ids = re.findall(r'<section id="([^"]+)"', page)
    assert len(section_ids) == len(set(section_ids)) == len(findings)
    assert "model m version 3" in page and "gold.dim_user v4" in page
    markdown = written.markdown.read_text()
    for finding in findings:
        assert finding.reading in markdown
    for chart in written.charts:
        assert f"]({chart.name})" in markdown and chart.is_file()


def test_a_chart_without_data_is_not_drawn(tmp_path):
    empty = {name: frame.iloc[:0] for name, frame in _tables().items()}
    summary, findings = analyse(empty, CONFIG, [], None, "no users")
    (tmp_path / "wellness_trend.png").write_bytes(b"stale")
    charts = report.render_charts(findings, tmp_path, 50)
    assert "wellness-trend" not in charts and not (tmp_path / "wellness_trend.png").exists()
    assert "<img" not in report.render_html(findings, charts, {"generated": datetime(2016, 5, 1), "lake": "/l",
                                                               "mlflow_run_id": "r", "model": None})


def _write_tiny_lake(lake_dir):
    """_tables() as gold Delta tables (and a silver quarantine) written with delta-rs: no Spark."""
    from deltalake import write_deltalake

    t = _tables()
    kpi = t["kpi"].drop(columns=["date", "day_of_week"])
    users = t["users"].assign(avg_active_minutes=[280.0, 120.0, None], valid_days=[3, 3, 0])
    tables = {"kpi_daily_wellness": kpi, "dim_user": users, "dim_date": _dim_date(),
              "fact_daily_activity": t["daily"], "fact_sleep": t["sleep"],
              "fact_hourly_activity": t["hourly"].drop(columns=["date", "day_of_week"]), "goal_alerts": t["alerts"]}
    for name, frame in tables.items():
        write_deltalake(str(lake_dir / "gold" / name), frame)
    write_deltalake(str(lake_dir / "gold" / "goal_alerts"), t["alerts"].iloc[:1], mode="append")   # version 1
    quarantine = pd.DataFrame({"target_table": ["daily_activity", "daily_activity", None],
                               "reasons": [["negative_value:total_steps"], ["negative_value:total_steps"],
                                           ["unparseable_event"]]})
    write_deltalake(str(lake_dir / "silver" / "quarantine"), quarantine)


def test_run_insights_on_a_tiny_lake_reads_with_delta_rs_and_logs_the_versions(tmp_path, monkeypatch, mlflow_uris):
    """The whole step without a JVM: gold read with delta-rs at pinned versions, reports written, one MLflow
    run with the versions and row counts; too few users for the model, which is skipped with its reason."""
    import mlflow

    from fitbit_lakehouse import silver

    _write_tiny_lake(tmp_path)
    monkeypatch.setattr(silver, "reconcile", lambda spark, settings: [])
    settings = load_settings(environ={}).with_overrides(**{
        "paths.lake_dir": str(tmp_path), "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    result = insights.run_insights(None, settings)
    run = mlflow.MlflowClient().get_run(result["mlflow_run_id"])
    assert result["model"] is None and "2 users with a valid day" in result["model_skipped"]
    assert run.data.tags["model.skipped"] == result["model_skipped"]
    assert run.data.params["delta_version.gold.goal_alerts"] == "1"
    assert run.data.params["delta_version.gold.kpi_daily_wellness"] == "0"
    assert run.data.params["model.n_clusters"] == "3" and run.data.params["kpi.activity.steps_goal"] == "10000"
    assert run.data.metrics["rows.gold.goal_alerts"] == 4 and run.data.metrics["rows.silver.quarantine"] == 3
    assert run.data.metrics["valid_user_days"] == 6
    page = Path(result["html_report"]).read_text()
    assert Path(result["html_report"]).name == "wellness_report.html"
    assert Path(result["html_report"]).parent == Path(result["report"]).parent == settings.reports_dir
    assert "3 records quarantined, most often for negative_value:total_steps (2 in daily_activity)" in page
    assert len(_png_sources(page)) == len(result["charts"])


def test_insights_keep_the_last_report_while_gold_is_unchanged(tmp_path, monkeypatch, mlflow_uris):
    """A run on the same table versions and settings writes no new report and logs no new MLflow run;
    a new version of a table it reads, or another setting it follows, makes a new one."""
    import mlflow

    from fitbit_lakehouse import silver

    _write_tiny_lake(tmp_path)
    monkeypatch.setattr(silver, "reconcile", lambda spark, settings: [])
    settings = load_settings(environ={}).with_overrides(**{
        "paths.lake_dir": str(tmp_path), "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    first = insights.run_insights(None, settings)
    again = insights.run_insights(None, settings)
    assert not first["unchanged"] and again["unchanged"]
    assert again["mlflow_run_id"] == first["mlflow_run_id"] and again["charts"] == first["charts"]
    experiment = mlflow.MlflowClient().get_experiment_by_name(settings.get("mlflow.experiment"))
    assert len(mlflow.MlflowClient().search_runs([experiment.experiment_id])) == 1

    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "gold" / "goal_alerts"), _tables()["alerts"].iloc[:1], mode="append")
    after_new_alert = insights.run_insights(None, settings)
    assert not after_new_alert["unchanged"] and after_new_alert["mlflow_run_id"] != first["mlflow_run_id"]
    other_goal = insights.run_insights(None, settings.with_overrides(**{"kpi.activity.steps_goal": 8000}))
    assert not other_goal["unchanged"]
