"""The live dashboard's data shaping, its reader of Delta tables (delta-rs, tiny tables written here)
and the Streamlit page itself through Streamlit's headless AppTest: no Spark, no browser."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fitbit_lakehouse import dashboard as d
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.insights import kpi_summary

ROOT = Path(__file__).resolve().parents[2]


def _kpi(rows) -> pd.DataFrame:
    """rows: (user_key, date_key, total_steps, active_minutes, wellness_score, sleep_efficiency, daily_segment)."""
    frame = pd.DataFrame(rows, columns=["user_key", "date_key", "total_steps", "active_minutes", "wellness_score",
                                        "sleep_efficiency", "daily_segment"])
    return d.with_dates(frame)


KPI_ROWS = [("a", 20160411, 10000, 300, 80.0, 0.9, "High"),      # a Monday
            ("b", 20160411, 4000, 100, 60.0, 0.8, "Low"),
            ("a", 20160412, 6000, 200, 70.0, 0.95, "Medium"),
            ("a", 20160414, 8000, 190, None, None, "Medium"),     # no sleep: no score
            ("b", 20160415, 3000, 90, 50.0, 0.7, "Low")]
USERS = pd.DataFrame({"user_key": ["a", "b", "c"], "engagement_segment": ["Medium", "Low", "Unknown"]})


def test_with_dates_reads_the_date_key():
    kpi = _kpi(KPI_ROWS)
    assert kpi["date"].iloc[0] == pd.Timestamp("2016-04-11")
    assert list(kpi["day_of_week"].astype(str)) == ["Monday", "Monday", "Tuesday", "Thursday", "Friday"]


def test_kpi_tiles_are_the_reports_summary():
    kpi = _kpi(KPI_ROWS)
    tiles = {t.key: t for t in d.kpi_tiles(kpi, USERS)}
    summary = kpi_summary(kpi, USERS)
    assert [t.label for t in tiles.values()] == ["Valid user-days", "Users", "Mean daily steps",
                                                  "Mean active minutes", "Mean wellness score",
                                                  "Mean sleep efficiency"]
    for key, tile in tiles.items():
        assert tile.value == summary[key]
    assert tiles["valid_user_days"].text == "5" and tiles["users"].text == "3"
    assert tiles["mean_daily_steps"].text == "6,200.0"          # 31000 / 5
    assert tiles["mean_active_minutes"].text == "176.0"         # 880 / 5
    assert tiles["mean_wellness_score"].text == "65.0"          # (80 + 60 + 70 + 50) / 4
    assert tiles["mean_sleep_efficiency"].text == "83.8%"       # (0.9 + 0.8 + 0.95 + 0.7) / 4 = 0.8375


def test_kpi_tiles_of_an_empty_period_say_so():
    tiles = d.kpi_tiles(_kpi([]), USERS.iloc[:0])
    assert [t.text for t in tiles] == ["0", "0", "–", "–", "–", "–"]


def test_wellness_trend_has_every_day_and_gaps_where_none_is_scored():
    trend = d.wellness_trend(_kpi(KPI_ROWS))
    assert list(trend["date"]) == list(pd.date_range("2016-04-11", "2016-04-15"))
    assert trend["wellness_score"].tolist()[:2] == [70.0, 70.0]
    # the 13th has no data, the 14th no score
    assert math.isnan(trend["wellness_score"][2]) and math.isnan(trend["wellness_score"][3])
    assert trend["wellness_score"][4] == 50.0
    assert trend["user_days"].tolist() == [2, 1, 0, 0, 1]
    assert trend["run"].tolist() == [1, 1, -1, -1, 2]   # two stretches, so two lines


def test_wellness_trend_spans_the_calendar_of_dim_date():
    dates = pd.DataFrame({"date": pd.to_datetime(["2016-04-10", "2016-04-16"]).date})
    trend = d.wellness_trend(_kpi(KPI_ROWS), dates)
    assert trend["date"].min() == pd.Timestamp("2016-04-10") and trend["date"].max() == pd.Timestamp("2016-04-16")
    assert trend["run"].tolist() == [-1, 1, 1, -1, -1, 2, -1]


def test_wellness_trend_of_nothing_is_empty():
    assert d.wellness_trend(_kpi([])).empty


def test_trend_chart_draws_one_line_per_run_with_readable_dates():
    spec = d.trend_chart(d.wellness_trend(_kpi(KPI_ROWS))).to_dict()
    encoding = spec["encoding"]
    assert encoding["detail"]["field"] == "run"   # no line across a gap
    assert encoding["x"]["type"] == "temporal" and encoding["x"]["axis"]["format"] == "%d %b"
    assert encoding["x"]["axis"]["labelOverlap"] is True
    values = next(iter(spec["datasets"].values()))
    assert len(values) == 3 and all(v["run"] >= 0 for v in values)   # missing days are not points


def test_segments_in_their_order_with_empty_ones():
    seg = d.engagement_segments(USERS)
    assert seg.to_dict("list") == {"segment": ["High", "Medium", "Low", "Unknown"], "users": [0, 1, 1, 1]}
    settings = load_settings(conf_dir=ROOT / "conf", environ={})
    assert d.segment_order(settings) == ["High", "Medium", "Low", "Unknown"]
    daily = d.daily_segments(_kpi(KPI_ROWS))
    assert daily.to_dict("list") == {"segment": ["High", "Medium", "Low"], "user_days": [1, 2, 2]}


def test_hourly_and_weekday_patterns():
    hourly = pd.DataFrame({"user_key": ["a", "b", "a"], "date_key": [20160411, 20160411, 20160412],
                           "hour": [8, 8, 23], "steps": [100, 300, 50]})
    pattern = d.hourly_pattern(hourly)
    assert pattern["hour"].tolist() == list(range(24))
    assert pattern["mean_steps"][8] == 200.0 and pattern["mean_steps"][23] == 50.0
    assert math.isnan(pattern["mean_steps"][0])
    assert d.hourly_pattern(None)["mean_steps"].isna().all()

    weekday = d.weekday_pattern(_kpi(KPI_ROWS))
    assert weekday["day_of_week"].tolist() == d.WEEKDAYS
    assert weekday.set_index("day_of_week").loc["Monday", "mean_steps"] == 7000.0
    assert math.isnan(weekday.set_index("day_of_week").loc["Sunday", "mean_steps"])

    grid = d.weekday_hour(hourly).set_index(["day_of_week", "hour"])["mean_steps"]
    assert grid[("Monday", 8)] == 200.0 and grid[("Tuesday", 23)] == 50.0
    assert len(grid) == 7 * 24 and math.isnan(grid[("Monday", 0)])   # the report's grid: every cell
    assert d.weekday_hour(None).empty


def test_hourly_figures_count_only_valid_days_as_the_report_does():
    hourly = pd.DataFrame({"user_key": ["a", "a", "b"], "date_key": [20160412, 20160413, 20160412],
                           "hour": [8, 8, 8], "steps": [600, 0, 300]})
    kpi = pd.DataFrame({"user_key": ["a", "b"], "date_key": [20160412, 20160412]})   # a's 4/13: not worn
    hours = d.hours_of_valid_days(hourly, kpi)
    assert sorted(hours["steps"]) == [300, 600]
    assert d.hourly_pattern(hours).set_index("hour").loc[8, "mean_steps"] == 450
    assert d.hours_of_valid_days(None, kpi) is None


def test_sleep_view():
    sleep = pd.DataFrame({"user_key": ["a", "a", "b", "b"], "date_key": [20160412, 20160413, 20160412, 20160413],
                          "time_in_bed": [400, 500, 300, 0], "minutes_asleep": [380, 450, 290, 0],
                          "sleep_efficiency": [0.95, 0.9, 290 / 300, None]})
    view = d.sleep_view(sleep)
    assert view.n == 3   # a night with no time in bed is not a night
    expected = np.corrcoef([400, 500, 300], [380, 450, 290])[0, 1]
    assert view.r == pytest.approx(expected, abs=5e-4)
    assert view.mean_efficiency == pytest.approx((0.95 + 0.9 + 290 / 300) / 3, abs=5e-4)
    assert d.sleep_view(None).n == 0 and d.sleep_view(sleep.iloc[:2]).r is None   # too few pairs


def test_recent_alerts_newest_first():
    alerts = pd.DataFrame({"user_key": ["aaaaaaaa1111", "bbbbbbbb2222", "cccccccc3333"],
                           "date_key": [20160411, 20160412, 20160412], "goal_steps": [10000] * 3,
                           "reached_at": pd.to_datetime(["2016-04-11 18:00", "2016-04-12 20:00", "2016-04-12 09:00"]),
                           "steps_at_alert": [10100, 12000, 10500]})
    recent = d.recent_alerts(alerts, limit=2)
    assert recent["user"].tolist() == ["bbbbbbbb", "cccccccc"]
    assert list(recent.columns) == ["reached_at", "date", "user", "steps_at_alert", "goal_steps"]
    assert d.recent_alerts(None).empty


# --- reading Delta with delta-rs -------------------------------------------------------------

def _write(lake: Path, name: str, frame: pd.DataFrame, mode: str = "error") -> None:
    from deltalake import write_deltalake

    write_deltalake(str(lake / "gold" / name), pa.Table.from_pandas(frame, preserve_index=False), mode=mode)


def _tiny_lake(lake: Path) -> None:
    kpi = pd.DataFrame(KPI_ROWS, columns=["user_key", "date_key", "total_steps", "active_minutes", "wellness_score",
                                          "sleep_efficiency", "daily_segment"]).astype({"date_key": "int32"})
    _write(lake, "kpi_daily_wellness", kpi)
    _write(lake, "dim_user", USERS)


def test_reader_says_what_to_run_on_a_lake_without_gold(tmp_path):
    with pytest.raises(d.NoGold, match="make run.*make stream"):
        d.GoldReader(tmp_path).load()


def test_a_reader_started_before_gold_existed_shows_it_once_written(tmp_path):
    reader = d.GoldReader(tmp_path)   # the page's one reader, made when the server starts
    with pytest.raises(d.NoGold):
        reader.load()
    _tiny_lake(tmp_path)              # then the first run or stream writes gold
    assert len(reader.load().kpi) == len(KPI_ROWS)


def test_reader_reads_again_only_a_table_that_changed(tmp_path):
    _tiny_lake(tmp_path)
    reader = d.GoldReader(tmp_path)
    first = reader.load()
    assert len(first.kpi) == 5 and first.sleep is None and first.alerts is None   # optional tables may be missing
    assert first.versions == {"kpi_daily_wellness": 0, "dim_user": 0} and first.updated_at is not None
    again = reader.load()
    assert again.users is first.users   # same version: not read again
    _write(tmp_path, "dim_user", pd.DataFrame({"user_key": ["d"], "engagement_segment": ["High"]}), mode="append")
    third = reader.load()
    assert third.versions["dim_user"] == 1 and len(third.users) == 4
    assert {t.key: t.value for t in d.kpi_tiles(third.kpi, third.users)}["users"] == 4


# --- the page and the command ----------------------------------------------------------------

def _run_page(monkeypatch, lake: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FITBIT_LAKE_DIR", str(lake))
    monkeypatch.setenv("FITBIT_CONF_DIR", str(ROOT / "conf"))
    page = AppTest.from_file(str(d.APP), default_timeout=60)
    page.run()
    assert not page.exception, page.exception
    return page


def test_page_shows_the_tiles(monkeypatch, tmp_path):
    _tiny_lake(tmp_path)
    page = _run_page(monkeypatch, tmp_path)
    tiles = {m.label: m.value for m in page.metric}
    assert tiles == {"Valid user-days": "5", "Users": "3", "Mean daily steps": "6,200.0",
                     "Mean active minutes": "176.0", "Mean wellness score": "65.0", "Mean sleep efficiency": "83.8%"}


def test_page_on_a_lake_without_gold_says_what_to_run(monkeypatch, tmp_path):
    page = _run_page(monkeypatch, tmp_path)
    assert not page.metric
    assert any("make run" in i.value and "make stream" in i.value for i in page.info)


def test_streamlit_command_is_headless_without_telemetry():
    settings = load_settings(conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": "/some/lake"})
    command = d.streamlit_command(settings)
    flags = dict(zip(command[::1], command[1::1]))
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4] == str(d.APP)
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.port"] == str(settings.get("dashboard.port"))
    assert flags["--lake-dir"] == "/some/lake"
    assert flags["--refresh-seconds"] == str(settings.get("dashboard.refresh_seconds"))
    assert d.streamlit_command(settings, port=9999)[d.streamlit_command(settings).index("--server.port") + 1] == "9999"
    assert d.url_of(settings, 9999) == "http://localhost:9999"


def test_cli_dashboard_serves_and_lakeview_builds_the_lakeview_json(monkeypatch, cli_signals):
    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse import bundle

    served, written = [], []
    monkeypatch.setattr(d, "serve", lambda settings, port=None: served.append(port) or 0)
    monkeypatch.setattr(bundle, "write_dashboard", lambda root: written.append(root) or root / "x.json")
    assert cli.main(["dashboard", "--port", "8777"]) == 0 and served == [8777]
    assert cli.main(["lakeview"]) == 0 and len(written) == 1


def test_a_taken_port_or_an_address_not_of_this_machine_is_one_line_before_streamlit_starts(base_settings):
    """Streamlit said "Port 8599 is not available" in its own log line, and an address or port it
    could not use as a traceback of fifty lines."""
    import socket

    from fitbit_lakehouse.config import ConfigError
    from fitbit_lakehouse.dashboard import require_a_free_port, serve

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=f"^Port {taken} on 127.0.0.1 is taken .*dashboard --port") as failure:
            serve(base_settings, port=taken)   # refused before anything starts
        assert "\n" not in str(failure.value)
    require_a_free_port(base_settings, taken)   # free again
    with pytest.raises(ConfigError, match="is not a port"):
        require_a_free_port(base_settings, 99999)
    elsewhere = base_settings.with_overrides(**{"dashboard.address": "10.255.255.1"})
    with pytest.raises(ConfigError, match="cannot listen on dashboard.address 10.255.255.1 .*give 127.0.0.1"):
        require_a_free_port(elsewhere, taken)
