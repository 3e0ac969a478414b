"""Exploratory questions over silver, for notebooks/06_eda.ipynb (not part of the scheduled job).

Pure pandas functions over the silver tables as delta-rs reads them (`read_silver`), so the notebook
stays thin and every figure it prints is computed here and tested on tiny frames. Column names are
silver's (fitbit_id, activity_date, total_steps, ...); only counts and shares leave these functions,
never a raw Id.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from .catalogue import kinds_for_table
from .insights import WEEKDAYS

DAILY_MINUTES = ["very_active_minutes", "fairly_active_minutes", "lightly_active_minutes", "sedentary_minutes"]


def time_column(table: str) -> str:
    """The silver table's date or timestamp column (the time of its natural key; weigh-ins: logged_at)."""
    kind = kinds_for_table(table)[0]
    return next(c.name for c in kind.columns if c.type in ("date", "timestamp"))


def read_silver(lake_dir: Path | str, table: str, columns: list[str] | None = None,
                filters: list[tuple] | None = None) -> pd.DataFrame | None:
    """A silver table read with delta-rs (no Spark); None when the lake has no such table."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table_ = DeltaTable(str(Path(lake_dir) / "silver" / table))
    except TableNotFoundError:
        return None
    return table_.to_pandas(columns=columns, filters=filters)


def _weekday(values: pd.Series) -> pd.Categorical:
    return pd.Categorical(pd.to_datetime(values).dt.day_name(), categories=WEEKDAYS, ordered=True)


# --- usage by weekday and hour ------------------------------------------------------------

def usage_by_weekday(daily: pd.DataFrame) -> pd.DataFrame:
    """Per weekday (Monday first): user-days recorded, days worn (steps > 0), their share, and the mean
    steps of a worn day."""
    days = daily.assign(weekday=_weekday(daily["activity_date"]), worn=daily["total_steps"] > 0)
    worn_steps = days["total_steps"].where(days["worn"])
    table = days.assign(worn_steps=worn_steps).groupby("weekday", observed=False).agg(
        user_days=("total_steps", "size"), worn_days=("worn", "sum"), mean_steps_worn_day=("worn_steps", "mean"))
    table["share_worn"] = table["worn_days"] / table["user_days"].where(table["user_days"] > 0)
    return table.astype({"user_days": "int64", "worn_days": "int64"})


def usage_by_hour(hourly_steps: pd.DataFrame) -> pd.DataFrame:
    """Per hour of day (0-23): user-hours recorded, mean steps per user-hour, share of all steps."""
    hours = hourly_steps.assign(hour=pd.to_datetime(hourly_steps["activity_hour"]).dt.hour)
    table = hours.groupby("hour").agg(user_hours=("step_total", "size"), mean_steps=("step_total", "mean"),
                                      steps=("step_total", "sum")).reindex(range(24))
    total = table["steps"].sum()
    table["share_of_steps"] = table["steps"] / total if total else float("nan")
    return table.fillna({"user_hours": 0, "steps": 0}).astype({"user_hours": "int64", "steps": "int64"})


# --- who logs sleep and weight ------------------------------------------------------------

def logging_users(daily: pd.DataFrame, sleep: pd.DataFrame | None, weight: pd.DataFrame | None) -> pd.DataFrame:
    """Users with activity data, and how many of them log sleep and weight: users, share of the users
    with activity, records, records per logging user."""
    everyone = set(daily["fitbit_id"].unique())
    rows = [("activity (daily)", everyone, len(daily))]
    for label, frame in (("sleep", sleep), ("weight", weight)):
        frame = frame if frame is not None else pd.DataFrame({"fitbit_id": []})
        rows.append((label, set(frame["fitbit_id"].unique()), len(frame)))
    total = len(everyone)
    return pd.DataFrame({
        "users": [len(ids) for _, ids, _ in rows],
        "share_of_users": [len(ids & everyone) / total if total else float("nan") for _, ids, _ in rows],
        "records": [n for _, _, n in rows],
        "records_per_user": [n / len(ids) if ids else float("nan") for _, ids, n in rows],
    }, index=pd.Index([label for label, _, _ in rows], name="logs"))


def weight_entry_kinds(weight: pd.DataFrame | None) -> dict:
    """Weigh-ins entered by hand against those a scale sent."""
    if weight is None or weight.empty:
        return {"weigh_ins": 0, "manual": 0, "share_manual": None}
    manual = int(weight["is_manual_report"].astype(bool).sum())
    return {"weigh_ins": int(len(weight)), "manual": manual, "share_manual": manual / len(weight)}


# --- device wear time ---------------------------------------------------------------------

def wear_time(daily: pd.DataFrame, sleep: pd.DataFrame | None, full_wear_minutes: int) -> pd.DataFrame:
    """Per user-day: minutes recorded (very + fairly + lightly active + sedentary), whether that is the
    full day, and whether the day has a sleep record (sleep time is not in the four fields)."""
    days = daily[["fitbit_id", "activity_date", "total_steps"]].assign(
        recorded_minutes=daily[DAILY_MINUTES].sum(axis=1))
    days["full_wear"] = days["recorded_minutes"] >= full_wear_minutes
    slept = set()
    if sleep is not None and len(sleep):
        slept = set(zip(sleep["fitbit_id"], pd.to_datetime(sleep["sleep_day"]).dt.date))
    days["sleep_logged"] = [(i, pd.Timestamp(d).date()) in slept for i, d in zip(days["fitbit_id"],
                                                                                days["activity_date"])]
    return days


def wear_summary(wear: pd.DataFrame) -> dict:
    """Headline figures of wear_time."""
    if wear.empty:
        return {"user_days": 0, "full_wear_days": 0, "share_full_wear": None, "median_minutes": None,
                "zero_step_days": 0, "mean_minutes_with_sleep": None, "mean_minutes_without_sleep": None}
    with_sleep = wear.loc[wear["sleep_logged"], "recorded_minutes"]
    without = wear.loc[~wear["sleep_logged"], "recorded_minutes"]
    return {"user_days": int(len(wear)), "full_wear_days": int(wear["full_wear"].sum()),
            "share_full_wear": float(wear["full_wear"].mean()),
            "median_minutes": float(wear["recorded_minutes"].median()),
            "zero_step_days": int((wear["total_steps"] == 0).sum()),
            "mean_minutes_with_sleep": float(with_sleep.mean()) if len(with_sleep) else None,
            "mean_minutes_without_sleep": float(without.mean()) if len(without) else None}


def wear_by_date(wear: pd.DataFrame) -> pd.DataFrame:
    """Per calendar day: users recorded and their median minutes (a partial first or last day of an
    export shows up here)."""
    return wear.groupby(pd.to_datetime(wear["activity_date"]).rename("date")).agg(
        users=("fitbit_id", "nunique"), median_minutes=("recorded_minutes", "median"))


# --- the overlap day ----------------------------------------------------------------------

def rows_on_day(frames: dict[str, pd.DataFrame], day: date | str) -> pd.DataFrame:
    """Per silver table and source file: its rows whose time falls on `day`, and their users. Silver
    holds one row per key, so on a day two exports share it shows which file's record won."""
    day = pd.Timestamp(day).normalize()
    parts = []
    for table, frame in frames.items():
        if frame is None or frame.empty:
            continue
        times = pd.to_datetime(frame[time_column(table)])
        on_day = frame[(times >= day) & (times < day + pd.Timedelta(days=1))]
        if on_day.empty:
            continue
        parts.append(on_day.groupby("_source_file").agg(rows=("fitbit_id", "size"), users=("fitbit_id", "nunique"))
                     .reset_index().assign(table=table))
    if not parts:
        return pd.DataFrame({"table": [], "source_file": [], "rows": [], "users": []})
    return pd.concat(parts).rename(columns={"_source_file": "source_file"})[
        ["table", "source_file", "rows", "users"]].reset_index(drop=True)


def day_filter(table: str, day: date | str) -> list[tuple]:
    """A delta-rs filter for the rows of one day of a silver table (reads only that day's files)."""
    start = pd.Timestamp(day).normalize()
    column = time_column(table)
    kind_type = next(c.type for c in kinds_for_table(table)[0].columns if c.name == column)
    if kind_type == "date":
        return [(column, "=", start.date())]
    return [(column, ">=", start.to_pydatetime()), (column, "<", (start + pd.Timedelta(days=1)).to_pydatetime())]
