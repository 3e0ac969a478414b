"""`make dashboard`: a live web dashboard over gold, read with delta-rs (no Spark, no JVM).

Streamlit serves it (dashboard_app.py, a thin script); everything it shows is shaped here by pure
pandas functions, so the figures are testable on tiny frames without a browser. The page re-reads
gold every `dashboard.refresh_seconds`: a table is read again only when its Delta version moved, so
under `make stream` the page follows each gold commit at the cost of a look at the Delta logs.

Definitions are those of the report: the KPI tiles are `insights.kpi_summary` of the same frames.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from . import insights
from .config import ConfigError, Settings
from .insights import HOURS, WEEKDAYS
REQUIRED = ("kpi_daily_wellness", "dim_user")   # what the KPI tiles need; the rest is optional
OPTIONAL = ("dim_date", "fact_hourly_activity", "fact_sleep", "goal_alerts")


class NoGold(LookupError):
    """The lake has no gold tables (yet): the message says what to run."""


# --- reading gold ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Gold:
    """The gold tables the dashboard shows, as of one look at the lake. Optional ones may be None."""
    kpi: pd.DataFrame
    users: pd.DataFrame
    dates: pd.DataFrame | None
    hourly: pd.DataFrame | None
    sleep: pd.DataFrame | None
    alerts: pd.DataFrame | None
    versions: dict[str, int]
    updated_at: datetime | None   # time of the newest commit among them


def _is_delta(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


class GoldReader:
    """Reads the gold tables with delta-rs, again only when a table's version changed. One per
    server process (shared by its browser sessions, hence the lock)."""

    def __init__(self, lake_dir: Path | str):
        self.gold_dir = Path(lake_dir) / "gold"
        self._cache: dict[str, tuple[int, pd.DataFrame, datetime | None]] = {}
        self._lock = threading.Lock()

    def _read(self, name: str) -> tuple[int, pd.DataFrame, datetime | None] | None:
        from deltalake import DeltaTable

        path = self.gold_dir / name
        if not _is_delta(path):
            return None
        table = DeltaTable(str(path))
        version = table.version()
        cached = self._cache.get(name)
        if cached is not None and cached[0] == version:
            return cached
        history = table.history(1)
        committed = (datetime.fromtimestamp(history[0]["timestamp"] / 1000)
                     if history and history[0].get("timestamp") else None)
        entry = (version, table.to_pandas(), committed)
        self._cache[name] = entry
        return entry

    def load(self) -> Gold:
        with self._lock:
            missing = [n for n in REQUIRED if not _is_delta(self.gold_dir / n)]
            if missing:
                raise NoGold(f"No gold tables in {self.gold_dir} yet ({', '.join(missing)} missing): run "
                             f"`make run` or `make stream` first. This page looks again by itself.")
            read = {name: self._read(name) for name in (*REQUIRED, *OPTIONAL)}
        frames = {n: (r[1] if r else None) for n, r in read.items()}
        stamps = [r[2] for r in read.values() if r and r[2]]
        return Gold(kpi=with_dates(frames["kpi_daily_wellness"]), users=frames["dim_user"],
                    dates=frames["dim_date"], hourly=frames["fact_hourly_activity"],
                    sleep=frames["fact_sleep"], alerts=frames["goal_alerts"],
                    versions={n: r[0] for n, r in read.items() if r}, updated_at=max(stamps, default=None))


def with_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """`date` (datetime64) and `day_of_week` (Monday..) from date_key yyyymmdd."""
    out = frame.copy()
    out["date"] = pd.to_datetime(out["date_key"].astype("int64").astype(str), format="%Y%m%d")
    out["day_of_week"] = pd.Categorical(out["date"].dt.day_name(), categories=WEEKDAYS, ordered=True)
    return out


# --- what the page shows -----------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    key: str      # kpi_summary's key
    label: str    # the tile's caption (tests find a tile by it)
    value: float | int | None
    text: str     # the value as shown
    help: str


TILES = (  # kpi_summary key, label, format, help
    ("valid_user_days", "Valid user-days", "{:,.0f}", "user-days with steps > 0 (a worn tracker)"),
    ("users", "Users", "{:,.0f}", "users in dim_user"),
    ("mean_daily_steps", "Mean daily steps", "{:,.1f}", "mean total steps over valid user-days"),
    ("mean_active_minutes", "Mean active minutes", "{:,.1f}",
     "very + fairly + lightly active minutes, mean over valid user-days"),
    ("mean_wellness_score", "Mean wellness score", "{:,.1f}",
     "0-100, mean over valid user-days that also have sleep"),
    ("mean_sleep_efficiency", "Mean sleep efficiency", "{:.1%}", "minutes asleep / time in bed, mean"),
)


def kpi_tiles(kpi: pd.DataFrame, users: pd.DataFrame) -> list[Tile]:
    """The headline tiles: insights.kpi_summary (the report's figures), formatted."""
    summary = insights.kpi_summary(kpi, users)
    return [Tile(key, label, summary.get(key), "–" if summary.get(key) is None else fmt.format(summary[key]), help_)
            for key, label, fmt, help_ in TILES]


def calendar(first, last) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize(), freq="D")


def wellness_trend(kpi: pd.DataFrame, dates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean wellness score per calendar day, one row for every day from the first to the last
    (dim_date's range when given): a day without a score has NaN, and `run` numbers the stretches
    of consecutive scored days, so a line drawn per run leaves a gap where days are missing."""
    by_day = insights.wellness_trend(kpi)   # the report's daily means, one row per day of the kpi's range
    if dates is not None and len(dates):
        first, last = pd.to_datetime(dates["date"]).min(), pd.to_datetime(dates["date"]).max()
    elif len(by_day):
        first, last = by_day.index.min(), by_day.index.max()
    else:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "wellness_score": pd.Series(dtype=float),
                             "user_days": pd.Series(dtype=int), "run": pd.Series(dtype=int)})
    days = calendar(min(first, by_day.index.min()) if len(by_day) else first,
                    max(last, by_day.index.max()) if len(by_day) else last)
    out = by_day.reindex(days)
    present = out["wellness_score"].notna()
    run = (present & ~present.shift(fill_value=False)).cumsum()
    return pd.DataFrame({"date": days, "wellness_score": out["wellness_score"].round(1).values,
                         "user_days": out["scored_users"].fillna(0).astype(int).values,   # one kpi row per user-day
                         "run": np.where(present, run, -1)})


def segment_order(settings: Settings | None = None) -> list[str]:
    if settings is None:
        return ["High", "Medium", "Low", "Unknown"]
    return [s["name"] for s in settings.get("kpi.segments")] + [settings.get("kpi.unknown_segment")]


def engagement_segments(users: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Users per engagement segment, in the segments' order (High first), empty segments as 0."""
    order = order or segment_order()
    counts = users["engagement_segment"].value_counts()
    names = [*order, *sorted(set(counts.index) - set(order))]
    return pd.DataFrame({"segment": names, "users": [int(counts.get(n, 0)) for n in names]})


def daily_segments(kpi: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Valid user-days per daily segment, in the segments' order."""
    order = [s for s in (order or segment_order()) if s != "Unknown"]
    counts = kpi["daily_segment"].value_counts()
    return pd.DataFrame({"segment": order, "user_days": [int(counts.get(n, 0)) for n in order]})


def hours_of_valid_days(hourly: pd.DataFrame | None, kpi: pd.DataFrame | None) -> pd.DataFrame | None:
    """The hours of valid user-days only, as the report counts them (insights.on_valid_days): a day
    the tracker was not worn would pull every hourly mean towards zero."""
    if hourly is None or kpi is None or not len(hourly):
        return hourly
    return insights.on_valid_days(hourly, kpi)


def hourly_pattern(hourly: pd.DataFrame | None) -> pd.DataFrame:
    """Mean steps per user-hour for each hour of the day, 0..23 (hours without data: NaN), as the report."""
    means = insights.hourly_pattern(hourly) if hourly is not None and len(hourly) \
        else pd.Series(np.nan, index=HOURS)
    return pd.DataFrame({"hour": HOURS, "mean_steps": means.round(1).values})


def weekday_pattern(kpi: pd.DataFrame) -> pd.DataFrame:
    """Mean steps and active minutes per valid day, Monday..Sunday."""
    grouped = kpi.groupby("day_of_week", observed=False)[["total_steps", "active_minutes"]].mean()
    grouped = grouped.reindex(WEEKDAYS)
    return pd.DataFrame({"day_of_week": WEEKDAYS, "mean_steps": grouped["total_steps"].round(1).values,
                         "mean_active_minutes": grouped["active_minutes"].round(1).values})


def weekday_hour(hourly: pd.DataFrame | None) -> pd.DataFrame:
    """The report's heat map (mean steps per user-hour, weekday x hour; NaN where no hour was
    recorded) in long form, one row per cell."""
    if hourly is None or not len(hourly):
        return pd.DataFrame({"day_of_week": pd.Series(dtype=object), "hour": pd.Series(dtype=int),
                             "mean_steps": pd.Series(dtype=float)})
    frame = with_dates(hourly[["date_key", "hour", "steps"]])
    frame["day_of_week"] = frame["day_of_week"].astype(str)
    grid = insights.weekday_hour_steps(frame).round(1).rename_axis(index="day_of_week", columns="hour")
    return grid.stack(future_stack=True).rename("mean_steps").reset_index()


@dataclass(frozen=True)
class SleepView:
    nights: pd.DataFrame      # time_in_bed, minutes_asleep, sleep_efficiency per user-day
    n: int
    r: float | None           # Pearson r of minutes asleep against time in bed
    mean_efficiency: float | None


def sleep_view(sleep: pd.DataFrame | None) -> SleepView:
    """Sleep efficiency: each night's time in bed against time asleep, with r and n."""
    if sleep is None or not len(sleep):
        return SleepView(pd.DataFrame(columns=["time_in_bed", "minutes_asleep", "sleep_efficiency"]), 0, None, None)
    nights = insights.sleep_nights(sleep)[["time_in_bed", "minutes_asleep", "sleep_efficiency"]]   # the report's nights
    nights = nights.astype(float).reset_index(drop=True)
    n = len(nights)
    r = insights.pearson(nights["time_in_bed"], nights["minutes_asleep"], min_pairs=3)["r"]
    r = None if r is None else round(r, 3)
    mean = round(float(nights["sleep_efficiency"].mean()), 3) if n else None
    return SleepView(nights, n, r, mean)


def recent_alerts(alerts: pd.DataFrame | None, limit: int = 20) -> pd.DataFrame:
    """The newest goal alerts first: when the goal was reached, by whom (a short form of the
    pseudonymous key), with how many steps."""
    columns = ["reached_at", "date", "user", "steps_at_alert", "goal_steps"]
    if alerts is None or not len(alerts):
        return pd.DataFrame(columns=columns)
    out = with_dates(alerts).sort_values(["reached_at", "user_key"], ascending=[False, True]).head(limit)
    out["user"] = out["user_key"].str[:8]
    out["reached_at"] = pd.to_datetime(out["reached_at"])
    return out[columns].reset_index(drop=True)


# --- charts (Vega-Lite through Altair, which Streamlit ships) ----------------------------------

def trend_chart(trend: pd.DataFrame):
    import altair as alt

    base = alt.Chart(trend[trend["run"] >= 0])
    x = alt.X("date:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=-45, labelOverlap=True))
    y = alt.Y("wellness_score:Q", title="mean wellness score (0-100)", scale=alt.Scale(zero=False))
    tooltip = [alt.Tooltip("date:T", format="%a %d %b %Y"), "wellness_score:Q", "user_days:Q"]
    # one line per run of consecutive days: no line is drawn across missing days
    return (base.mark_line(point=True).encode(x=x, y=y, detail="run:N", tooltip=tooltip)
            .properties(height=260))


def bar_chart(frame: pd.DataFrame, x: str, y: str, title: str, sort: list | None = None, color: str = "#4C72B0"):
    import altair as alt

    return (alt.Chart(frame).mark_bar(color=color)
            .encode(x=alt.X(f"{x}:O", sort=sort, title=None, axis=alt.Axis(labelAngle=0)),
                    y=alt.Y(f"{y}:Q", title=title), tooltip=[x, y])
            .properties(height=240))


def heatmap_chart(grid: pd.DataFrame):
    import altair as alt

    return (alt.Chart(grid).mark_rect()
            .encode(x=alt.X("hour:O", title="hour of day", axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("day_of_week:O", sort=WEEKDAYS, title=None),
                    color=alt.Color("mean_steps:Q", title="mean steps", scale=alt.Scale(scheme="blues")),
                    tooltip=["day_of_week", "hour", "mean_steps"])
            .properties(height=240))


def sleep_chart(view: SleepView):
    import altair as alt

    points = (alt.Chart(view.nights).mark_circle(size=40, opacity=0.6)
              .encode(x=alt.X("time_in_bed:Q", title="time in bed (min)"),
                      y=alt.Y("minutes_asleep:Q", title="minutes asleep"),
                      color=alt.Color("sleep_efficiency:Q", title="efficiency", scale=alt.Scale(scheme="viridis")),
                      tooltip=["time_in_bed", "minutes_asleep", alt.Tooltip("sleep_efficiency:Q", format=".1%")]))
    top = float(view.nights["time_in_bed"].max()) if view.n else 1.0
    diagonal = (alt.Chart(pd.DataFrame({"x": [0.0, top], "y": [0.0, top]})).mark_line(strokeDash=[4, 4], color="grey")
                .encode(x="x:Q", y="y:Q"))
    return (diagonal + points).properties(height=260)


# --- serving -------------------------------------------------------------------------------

APP = Path(__file__).with_name("dashboard_app.py")
_STREAMLIT_BANNER = ("You can now view your Streamlit app", "URL:", "Stopping...")


def streamlit_command(settings: Settings, port: int | None = None) -> list[str]:
    """`streamlit run dashboard_app.py` on the conf port, headless, no usage statistics."""
    port = port or settings.get("dashboard.port")
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", str(settings.get("dashboard.address")),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--logger.level", "warning",
            "--client.toolbarMode", "minimal", "--theme.base", "light",
            "--", "--lake-dir", str(settings.lake_dir),
            "--refresh-seconds", str(settings.get("dashboard.refresh_seconds")),
            "--alerts", str(settings.get("dashboard.recent_alerts"))]


def url_of(settings: Settings, port: int | None = None) -> str:
    address = str(settings.get("dashboard.address"))
    host = "localhost" if address in ("127.0.0.1", "0.0.0.0", "localhost", "") else address
    return f"http://{host}:{port or settings.get('dashboard.port')}"


def require_a_free_port(settings: Settings, port: int | None = None) -> None:
    """Streamlit says a taken port in a log line of its own, and an address that is not this machine's
    or a port past 65535 in a traceback: each is one line here, with what to give instead."""
    import errno
    import socket

    port = port or settings.get("dashboard.port")
    address = str(settings.get("dashboard.address") or "0.0.0.0")
    other = (f"give another: python -m fitbit_lakehouse dashboard --port <port>, or "
             f"FITBIT_SETTINGS='{{\"dashboard.port\": <port>}}' make dashboard")
    if not 1 <= port <= 65535:
        raise ConfigError(f"The dashboard's port {port} is not a port: {other} (from 1 to 65535)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as Streamlit binds: TIME_WAIT is free
            probe.bind((address, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"Port {port} on {address} is taken (another dashboard?): stop what holds it, or "
                              f"{other}") from None
        raise ConfigError(f"The dashboard cannot listen on dashboard.address {address} ({exc.strerror or exc}): give "
                          f"127.0.0.1 (this machine), 0.0.0.0 (every interface) or an address of this machine") from None


def serve(settings: Settings, port: int | None = None) -> int:
    """`make dashboard`: run Streamlit until Ctrl-C; one line with the URL once it answers."""
    require_a_free_port(settings, port)
    process = subprocess.Popen(streamlit_command(settings, port), stdout=subprocess.PIPE, text=True, bufsize=1)

    def stop(signum, frame):   # a SIGTERM stops Streamlit too, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        for line in process.stdout:
            if "URL:" in line:
                print(f"Dashboard at {url_of(settings, port)} (gold of {settings.lake_dir / 'gold'}, refreshed "
                      f"every {settings.get('dashboard.refresh_seconds')} s; Ctrl-C stops)", flush=True)
            elif line.strip() and not any(b in line for b in _STREAMLIT_BANNER):
                print(line, end="", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 130
