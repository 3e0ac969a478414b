"""The Streamlit page of `make dashboard` (started by `python -m fitbit_lakehouse dashboard`).

Thin on purpose: data and shapes come from dashboard.py; this file only lays them out. The whole
page is one fragment that Streamlit re-runs every --refresh-seconds, so it follows gold while
`make stream` writes it, without reloading the page.

    streamlit run dashboard_app.py -- --lake-dir data --refresh-seconds 5
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import streamlit as st

from fitbit_lakehouse import dashboard as d


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lake-dir")
    parser.add_argument("--refresh-seconds", type=float)
    parser.add_argument("--alerts", type=int)
    args, _ = parser.parse_known_args(sys.argv[1:])
    if args.lake_dir is None or args.refresh_seconds is None or args.alerts is None:   # run by hand
        from fitbit_lakehouse.config import load_settings

        settings = load_settings()
        args.lake_dir = args.lake_dir or str(settings.lake_dir)
        args.refresh_seconds = args.refresh_seconds or settings.get("dashboard.refresh_seconds")
        args.alerts = args.alerts or settings.get("dashboard.recent_alerts")
    return args


@st.cache_resource
def _reader(lake_dir: str) -> d.GoldReader:
    return d.GoldReader(lake_dir)


OPTIONS = _options()
st.set_page_config(page_title="Fitbit wellness - live", layout="wide")   # no page_icon: it would be fetched from a CDN
st.title("Fitbit wellness, live from gold")


@st.fragment(run_every=timedelta(seconds=OPTIONS.refresh_seconds))
def live() -> None:
    try:
        gold = _reader(OPTIONS.lake_dir).load()
    except d.NoGold as exc:
        st.info(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a commit caught half-way, a file being replaced: next refresh
        st.warning(f"Could not read gold just now ({type(exc).__name__}: {exc}); trying again in "
                   f"{OPTIONS.refresh_seconds:g} s.")
        return

    stamp = f"{gold.updated_at:%Y-%m-%d %H:%M:%S}" if gold.updated_at else "unknown"
    st.caption(f"Gold at {Path(OPTIONS.lake_dir) / 'gold'} - last commit {stamp}, kpi_daily_wellness "
               f"version {gold.versions.get('kpi_daily_wellness')} - refreshed every {OPTIONS.refresh_seconds:g} s")

    for column, tile in zip(st.columns(len(d.TILES)), d.kpi_tiles(gold.kpi, gold.users)):
        column.metric(tile.label, tile.text, help=tile.help, border=True)

    st.subheader("Wellness trend")
    trend = d.wellness_trend(gold.kpi, gold.dates)
    missing = int((trend["run"] < 0).sum())
    st.altair_chart(d.trend_chart(trend), width="stretch")
    st.caption(f"Mean wellness score per day over valid user-days with sleep; {missing} of {len(trend)} days have "
               f"no score and are left as gaps.")

    left, right = st.columns(2)
    with left:
        st.subheader("Engagement segments")
        st.altair_chart(d.bar_chart(d.engagement_segments(gold.users), "segment", "users", "users",
                                    sort=None, color="#C44E52"), width="stretch")
        st.caption("Users by their mean active minutes over valid days (High >= 270, Medium >= 180).")
    with right:
        st.subheader("Daily segments")
        st.altair_chart(d.bar_chart(d.daily_segments(gold.kpi), "segment", "user_days", "user-days",
                                    sort=None, color="#DD8452"), width="stretch")
        st.caption("Valid user-days by that day's active minutes.")

    hours = d.hours_of_valid_days(gold.hourly, gold.kpi)   # as the report: worn days only
    left, right = st.columns(2)
    with left:
        st.subheader("By hour of day")
        st.altair_chart(d.bar_chart(d.hourly_pattern(hours), "hour", "mean_steps", "mean steps per hour",
                                    color="#8172B2"), width="stretch")
    with right:
        st.subheader("By weekday")
        st.altair_chart(d.bar_chart(d.weekday_pattern(gold.kpi), "day_of_week", "mean_steps", "mean daily steps",
                                    sort=d.WEEKDAYS), width="stretch")
    grid = d.weekday_hour(hours)
    if len(grid):
        st.subheader("Weekday x hour")
        st.altair_chart(d.heatmap_chart(grid), width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Sleep efficiency")
        sleep = d.sleep_view(gold.sleep)
        if sleep.n:
            st.altair_chart(d.sleep_chart(sleep), width="stretch")
            r = "n/a" if sleep.r is None else f"{sleep.r:.2f}"
            st.caption(f"Time in bed against minutes asleep, one point per night (dashed: asleep the whole time). "
                       f"n = {sleep.n}, r = {r}, mean efficiency {sleep.mean_efficiency:.1%}.")
        else:
            st.write("No sleep logged yet.")
    with right:
        st.subheader("Recent goal alerts")
        alerts = d.recent_alerts(gold.alerts, OPTIONS.alerts)
        if len(alerts):
            st.dataframe(alerts, hide_index=True, width="stretch", column_config={
                "reached_at": st.column_config.DatetimeColumn("goal reached in the hour from", format="YYYY-MM-DD HH:mm"),
                "date": st.column_config.DateColumn("day", format="YYYY-MM-DD"),
                "steps_at_alert": st.column_config.NumberColumn("steps then", format="%d"),
                "goal_steps": st.column_config.NumberColumn("goal", format="%d")})
            st.caption(f"The {len(alerts)} newest of {len(gold.alerts)} alerts in gold/goal_alerts "
                       f"(the first hour a user-day's steps reached the goal).")
        else:
            st.write("No goal reached yet.")


live()
