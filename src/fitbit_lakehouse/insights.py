"""gold -> the wellness report (Markdown and one self-contained HTML file), its charts, and an MLflow run
that also trains and registers the learned engagement segments.

The analyses are pure pandas functions (frames in, frames or dicts out), so they are tested on tiny
frames and can be reused by anything that reads gold with delta-rs. `analyse` turns the frames into
the report's findings, each with a one-line reading computed from the data. `run_insights` is the only
part that reads and writes: it reads every table at a pinned Delta version (the one logged to MLflow),
trains the model, and writes the reports (report.py draws and renders them).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .config import Settings
from .gold import goal_hour
from .tables import Lake

log = logging.getLogger(__name__)

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEKEND = WEEKDAYS[5:]
HOURS = list(range(24))
UNKNOWN_TABLE = "(not a known event)"   # quarantined records that never had a target table


@dataclass(frozen=True)
class InsightsConfig:
    """What the analyses and readings need from conf/ (kpi.* segments, insights.*)."""
    segment_cutoffs: tuple[tuple[str, float], ...]   # highest first, as in kpi.segments
    unknown_segment: str
    recent_alerts: int
    min_pairs_for_correlation: int
    correlation_bands: tuple[tuple[str, float], ...]  # strongest first
    low_sleep_efficiency: float

    @property
    def segment_order(self) -> list[str]:
        return [name for name, _ in self.segment_cutoffs] + [self.unknown_segment]

    @classmethod
    def from_settings(cls, settings: Settings) -> "InsightsConfig":
        return cls(
            segment_cutoffs=tuple((s["name"], s["min_active_minutes"]) for s in settings.get("kpi.segments")),
            unknown_segment=settings.get("kpi.unknown_segment"),
            recent_alerts=int(settings.get("insights.recent_alerts")),
            min_pairs_for_correlation=int(settings.get("insights.min_pairs_for_correlation")),
            correlation_bands=tuple((b["word"], float(b["min_abs_r"]))
                                    for b in settings.get("insights.correlation_bands")),
            low_sleep_efficiency=float(settings.get("insights.low_sleep_efficiency")))


@dataclass
class Finding:
    """One section of the report: what it says (`reading`), what its chart draws (`data`), and the
    table it lists (`table`: display-ready text, column labels as shown)."""
    id: str
    title: str
    reading: str
    data: Any = None
    table: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)


# --- formatting of figures in readings and tables -----------------------------------------

def _int(value) -> str:
    return f"{value:,.0f}" if value is not None and pd.notna(value) else "n/a"


def _dec(value, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if value is not None and pd.notna(value) else "n/a"


def _pct(value, digits: int = 0) -> str:
    return f"{value:.{digits}%}" if value is not None and pd.notna(value) else "n/a"


def _day(value) -> str:
    return pd.Timestamp(value).strftime("%a %d %b %Y")


def _hour(hour) -> str:
    return f"{int(hour):02d}:00"


def _dates_of_keys(keys: pd.Series) -> pd.Series:
    return pd.to_datetime(keys.astype("Int64").astype(str), format="%Y%m%d")


# --- headline figures ---------------------------------------------------------------------

def kpi_summary(kpi: pd.DataFrame, users: pd.DataFrame) -> dict:
    """Headline figures of the period (pure pandas, so it is testable without Spark)."""
    with_sleep = kpi.dropna(subset=["wellness_score"])
    return {
        "valid_user_days": int(len(kpi)),
        "users": int(len(users)),
        "mean_daily_steps": round(float(kpi["total_steps"].mean()), 1) if len(kpi) else None,
        "mean_active_minutes": round(float(kpi["active_minutes"].mean()), 1) if len(kpi) else None,
        "days_with_wellness_score": int(len(with_sleep)),
        "mean_wellness_score": round(float(with_sleep["wellness_score"].mean()), 1) if len(with_sleep) else None,
        "mean_sleep_efficiency": round(float(kpi["sleep_efficiency"].mean()), 3)
        if kpi["sleep_efficiency"].notna().any() else None,
        "daily_segments": kpi["daily_segment"].value_counts().to_dict(),
        "engagement_segments": users["engagement_segment"].value_counts().to_dict(),
    }


def kpi_tiles(summary: dict) -> list[tuple[str, str]]:
    """(label, value) of the report's KPI tiles, from kpi_summary."""
    return [("users", _int(summary["users"])),
            ("valid user-days", _int(summary["valid_user_days"])),
            ("mean daily steps", _int(summary["mean_daily_steps"])),
            ("mean active minutes", _dec(summary["mean_active_minutes"])),
            ("mean wellness score", _dec(summary["mean_wellness_score"])),
            ("days with a wellness score", _int(summary["days_with_wellness_score"])),
            ("mean sleep efficiency", _pct(summary["mean_sleep_efficiency"], 1))]


def read_kpis(summary: dict) -> str:
    if not summary["valid_user_days"]:
        return f"{_int(summary['users'])} users and no valid activity day yet."
    text = (f"{_int(summary['users'])} users over {_int(summary['valid_user_days'])} valid user-days: "
            f"{_int(summary['mean_daily_steps'])} steps and {_dec(summary['mean_active_minutes'])} active "
            f"minutes a day on average")
    if summary["days_with_wellness_score"]:
        text += (f"; mean wellness score {_dec(summary['mean_wellness_score'])} on the "
                 f"{_int(summary['days_with_wellness_score'])} days that also have sleep")
    return text + "."


# --- calendar, trend and patterns ---------------------------------------------------------

def with_calendar(frame: pd.DataFrame, dim_date: pd.DataFrame) -> pd.DataFrame:
    """The frame with `date` (datetime64, naive) and `day_of_week` of its date_key, from dim_date."""
    calendar = dim_date[["date_key", "date", "day_of_week"]].copy()
    calendar["date"] = pd.to_datetime(calendar["date"])
    return frame.merge(calendar, on="date_key", how="left")


def on_valid_days(frame: pd.DataFrame, kpi: pd.DataFrame) -> pd.DataFrame:
    """Rows of user-days that are valid activity days (kpi_daily_wellness has exactly those): a day the
    tracker was not worn would pull every hourly mean towards zero."""
    return frame.merge(kpi[["user_key", "date_key"]].drop_duplicates(), on=["user_key", "date_key"])


def wellness_trend(kpi: pd.DataFrame) -> pd.DataFrame:
    """Mean wellness score per calendar day over the whole range of valid days, one row per day: a day
    without any score is a NaN row, so a line drawn from it breaks there instead of bridging the gap."""
    columns = ["wellness_score", "scored_users"]
    if kpi.empty or kpi["date"].isna().all():
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], name="date"), dtype=float)
    scored = kpi.dropna(subset=["wellness_score"])
    per_day = scored.groupby("date").agg(wellness_score=("wellness_score", "mean"),
                                         scored_users=("user_key", "nunique"))
    days = pd.date_range(kpi["date"].min(), kpi["date"].max(), freq="D", name="date")
    return per_day.reindex(days).astype(float)


def read_trend(trend: pd.DataFrame) -> str:
    scores = trend["wellness_score"]
    if scores.notna().sum() == 0:
        return "No day has a wellness score yet: a score needs both a valid activity day and sleep."
    gaps = int(scores.isna().sum())
    text = (f"Mean wellness score per day from {_day(trend.index.min())} to {_day(trend.index.max())}: "
            f"lowest {_dec(scores.min())} on {_day(scores.idxmin())}, highest {_dec(scores.max())} on "
            f"{_day(scores.idxmax())}")
    return text + (f"; {gaps} of {len(trend)} days have no score (gaps in the line)." if gaps
                   else f"; every one of the {len(trend)} days has a score.")


def segment_counts(users: pd.DataFrame, order: list[str]) -> pd.Series:
    """Users per engagement segment, in the segments' order (then any other segment found)."""
    counts = users["engagement_segment"].value_counts()
    rule_segments, unknown = order[:-1], order[-1]   # every rule segment, even when empty; Unknown if any
    names = rule_segments + [s for s in counts.index if s not in rule_segments and s != unknown] + \
        ([unknown] if unknown in counts.index else [])
    return counts.reindex(names, fill_value=0).astype(int)


def read_segments(counts: pd.Series, cutoffs: tuple[tuple[str, float], ...]) -> str:
    total = int(counts.sum())
    if not total:
        return "No user yet."
    parts = ", ".join(f"{name} {n} ({n / total:.0%})" for name, n in counts.items())
    rules = ", ".join(f"{name} >= {minimum:g}" for name, minimum in cutoffs if minimum > 0)
    return f"Of {total} users: {parts}; by mean active minutes per valid day ({rules})."


def hourly_pattern(hourly: pd.DataFrame) -> pd.Series:
    """Mean steps per user-hour by hour of day (0-23)."""
    return hourly.groupby("hour")["steps"].mean().reindex(HOURS).rename("steps")


def read_hourly(pattern: pd.Series) -> str:
    if pattern.notna().sum() == 0:
        return "No hourly data."
    peak, low = pattern.idxmax(), pattern.idxmin()
    return (f"Steps peak in the hour from {_hour(peak)} (mean {_int(pattern[peak])} per user-hour) and are "
            f"lowest from {_hour(low)} ({_int(pattern[low])}).")


def weekday_pattern(kpi: pd.DataFrame) -> pd.Series:
    """Mean daily steps by weekday over valid days, Monday first."""
    return kpi.groupby("day_of_week")["total_steps"].mean().reindex(WEEKDAYS).rename("steps")


def read_weekday(pattern: pd.Series) -> str:
    if pattern.notna().sum() == 0:
        return "No valid day yet."
    top, bottom = pattern.idxmax(), pattern.idxmin()
    text = (f"Most steps on {top} (mean {_int(pattern[top])} a valid day), fewest on {bottom} "
            f"({_int(pattern[bottom])})")
    return text + (f": {pattern[top] / pattern[bottom] - 1:.0%} more." if pattern[bottom] > 0 else ".")


def weekday_hour_steps(hourly: pd.DataFrame) -> pd.DataFrame:
    """Mean steps per user-hour, weekdays (Monday first) x hours 0-23; NaN where no hour was recorded."""
    grid = hourly.pivot_table(index="day_of_week", columns="hour", values="steps", aggfunc="mean")
    return grid.reindex(index=WEEKDAYS, columns=HOURS).astype(float)


def read_heatmap(grid: pd.DataFrame) -> str:
    if grid.notna().sum().sum() == 0:
        return "No hourly data."
    stacked = grid.stack()
    day, hour = stacked.idxmax()
    parts = [f"busiest weekday-hour {day} {_hour(hour)} (mean {_int(stacked.max())} steps per user-hour)"]
    for label, rows in (("Monday to Friday", WEEKDAYS[:5]), ("at weekends", WEEKEND)):
        profile = grid.loc[rows].mean()
        if profile.notna().any():
            parts.append(f"{label} the peak hour is {_hour(profile.idxmax())}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


# --- relationships ------------------------------------------------------------------------

def pearson(x: pd.Series, y: pd.Series, min_pairs: int) -> dict:
    """Pearson r over the complete (x, y) pairs, and their number n; r is None when there are fewer
    than min_pairs pairs or either side does not vary."""
    pairs = pd.concat([x.astype(float), y.astype(float)], axis=1, keys=["x", "y"]).dropna()
    n = int(len(pairs))
    if n < max(min_pairs, 2) or pairs["x"].nunique() < 2 or pairs["y"].nunique() < 2:
        return {"r": None, "n": n}
    return {"r": float(pairs["x"].corr(pairs["y"])), "n": n}


def strength(r: float, bands: tuple[tuple[str, float], ...]) -> str:
    """The word of the strongest band whose |r| threshold r reaches (conf insights.correlation_bands)."""
    for word, minimum in bands:
        if abs(r) >= minimum:
            return word
    return bands[-1][0]


def read_correlation(stats: dict, x_label: str, y_label: str, unit: str, bands) -> str:
    if stats["r"] is None:
        return f"{y_label} against {x_label}: too few pairs for a correlation (n = {stats['n']} {unit})."
    r = stats["r"]
    direction = "positive" if r > 0 else "negative"
    return (f"{y_label} against {x_label}: Pearson r = {r:+.2f} ({strength(r, bands)} {direction}), "
            f"n = {stats['n']:,} {unit}.")


def sleep_nights(sleep: pd.DataFrame) -> pd.DataFrame:
    """Nights with a time in bed: minutes asleep, time in bed and efficiency."""
    nights = sleep.dropna(subset=["minutes_asleep", "time_in_bed"])
    nights = nights[nights["time_in_bed"] > 0]
    return nights.assign(sleep_efficiency=nights["minutes_asleep"] / nights["time_in_bed"])[
        ["user_key", "date_key", "minutes_asleep", "time_in_bed", "sleep_efficiency"]]


def sleep_efficiency_analysis(sleep: pd.DataFrame, min_pairs: int, low_efficiency: float) -> dict:
    """Minutes asleep against time in bed (r, n), efficiency against time in bed, and the nights below
    the low-efficiency mark."""
    nights = sleep_nights(sleep)
    return {"nights": nights,
            "asleep_vs_in_bed": pearson(nights["time_in_bed"], nights["minutes_asleep"], min_pairs),
            "efficiency_vs_in_bed": pearson(nights["time_in_bed"], nights["sleep_efficiency"], min_pairs),
            "mean_efficiency": float(nights["sleep_efficiency"].mean()) if len(nights) else None,
            "low_nights": int((nights["sleep_efficiency"] < low_efficiency).sum()),
            "low_efficiency": low_efficiency}


def read_sleep(analysis: dict, bands) -> str:
    nights = len(analysis["nights"])
    if not nights:
        return "No night with sleep logged."
    text = read_correlation(analysis["asleep_vs_in_bed"], "time in bed", "Minutes asleep", "nights", bands)
    text = text[:-1] + (f"; mean efficiency {_pct(analysis['mean_efficiency'], 1)}, "
                        f"{analysis['low_nights']} nights ({analysis['low_nights'] / nights:.0%}) below "
                        f"{_pct(analysis['low_efficiency'])}")
    if analysis["efficiency_vs_in_bed"]["r"] is not None:
        text += f"; efficiency against time in bed r = {analysis['efficiency_vs_in_bed']['r']:+.2f}"
    return text + "."


def valid_days(daily: pd.DataFrame) -> pd.DataFrame:
    return daily[daily["is_valid_day"].astype(bool)]


def steps_calories_pairs(daily: pd.DataFrame) -> pd.DataFrame:
    """Steps and calories of valid activity days."""
    return valid_days(daily)[["user_key", "date_key", "total_steps", "calories"]]


def sedentary_sleep_pairs(daily: pd.DataFrame, sleep: pd.DataFrame) -> pd.DataFrame:
    """Sedentary minutes and minutes asleep of valid days that have sleep (the sleep that ends that day)."""
    return valid_days(daily)[["user_key", "date_key", "sedentary_minutes"]].merge(
        sleep[["user_key", "date_key", "minutes_asleep"]].dropna(), on=["user_key", "date_key"])


# --- users and segments -------------------------------------------------------------------

def user_features(daily: pd.DataFrame, sleep: pd.DataFrame, kpi: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per user with at least one valid day (index user_key): activity means over valid days,
    sleep means over the nights logged (NaN for a user who never logged sleep), mean wellness score."""
    activity = valid_days(daily).groupby("user_key").agg(
        valid_days=("date_key", "size"), mean_daily_steps=("total_steps", "mean"),
        mean_active_minutes=("active_minutes", "mean"), mean_sedentary_minutes=("sedentary_minutes", "mean"),
        mean_calories=("calories", "mean"))
    nights = sleep_nights(sleep).groupby("user_key").agg(
        sleep_days=("date_key", "size"), mean_minutes_asleep=("minutes_asleep", "mean"),
        mean_time_in_bed=("time_in_bed", "mean"), mean_sleep_efficiency=("sleep_efficiency", "mean"))
    features = activity.join(nights, how="left")
    if kpi is not None:
        features = features.join(kpi.groupby("user_key")["wellness_score"].mean().rename("mean_wellness_score"))
    features["sleep_days"] = features["sleep_days"].fillna(0)
    counts = ["valid_days", "sleep_days"]
    return features.astype({c: "int64" for c in counts} | {c: "float64" for c in features if c not in counts}) \
                   .sort_index()


PROFILE_COLUMNS = {"mean_daily_steps": "steps a day", "mean_active_minutes": "active minutes",
                   "mean_sedentary_minutes": "sedentary minutes", "mean_minutes_asleep": "minutes asleep",
                   "mean_sleep_efficiency": "sleep efficiency", "mean_wellness_score": "wellness score"}


def segment_profiles(features: pd.DataFrame, users: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per engagement segment: users, users who log sleep, and the mean over its users of each user's
    means (every user weighs the same, however many days they logged)."""
    joined = users[["user_key", "engagement_segment"]].merge(features.reset_index(), on="user_key", how="left")
    joined["logs_sleep"] = joined.get("sleep_days", pd.Series(0, index=joined.index)).fillna(0) > 0
    means = {c: (c, "mean") for c in PROFILE_COLUMNS if c in joined}
    profiles = joined.groupby("engagement_segment").agg(users=("user_key", "size"),
                                                        users_logging_sleep=("logs_sleep", "sum"), **means)
    present = [s for s in order if s in profiles.index] + [s for s in profiles.index if s not in order]
    return profiles.reindex(present)


def display_profiles(profiles: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"segment": profiles.index, "users": profiles["users"].map(_int).values,
                          "users logging sleep": profiles["users_logging_sleep"].map(_int).values})
    for column, label in PROFILE_COLUMNS.items():
        if column in profiles:
            fmt = (lambda v: _pct(v, 1)) if column == "mean_sleep_efficiency" else \
                (_dec if column == "mean_wellness_score" else _int)
            shown[label] = profiles[column].map(fmt).values
    return shown


def read_profiles(profiles: pd.DataFrame) -> str:
    measured = profiles.dropna(subset=["mean_daily_steps"]) if "mean_daily_steps" in profiles else profiles.iloc[:0]
    if measured.empty:
        return "No user with a valid day yet."
    parts = []
    for column, label, fmt in (("mean_daily_steps", "steps a day", _int),
                               ("mean_sedentary_minutes", "sedentary minutes", _int),
                               ("mean_minutes_asleep", "minutes asleep", _int),
                               ("mean_wellness_score", "wellness score", _dec)):
        if column in measured and measured[column].notna().any():
            parts.append(f"{label} " + ", ".join(f"{seg} {fmt(v)}" for seg, v in measured[column].items()))
    return "Mean per user by segment: " + "; ".join(parts) + "."


# --- alerts and data quality --------------------------------------------------------------

def recent_alerts(alerts: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The newest goal alerts (by the hour the goal was reached), newest first."""
    ordered = alerts.sort_values(["reached_at", "date_key", "user_key"], ascending=[False, False, True])
    return ordered.head(limit).reset_index(drop=True)


def display_alerts(recent: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "day": _dates_of_keys(recent["date_key"]).map(_day).values if len(recent) else [],
        # the hour whose steps reached the goal (reached_at is its start): by its end, not by its start
        "goal reached in": [goal_hour(t) for t in pd.to_datetime(recent["reached_at"])],
        "user": recent["user_key"].astype(str).str[:8].values,   # a pseudonym: the prefix is enough to tell users apart
        "goal steps": recent["goal_steps"].map(_int).values,
        "steps at alert": recent["steps_at_alert"].map(_int).values})


def read_alerts(alerts: pd.DataFrame) -> str:
    if alerts.empty:
        return "No user-day has reached the steps goal yet."
    days = _dates_of_keys(alerts["date_key"])
    hours = pd.to_datetime(alerts["reached_at"]).dt.hour
    goals = "/".join(_int(g) for g in sorted(alerts["goal_steps"].unique()))
    return (f"{len(alerts):,} user-days reached the {goals}-step goal ({alerts['user_key'].nunique()} users) "
            f"from {_day(days.min())} to {_day(days.max())}; half of them by the hour from "
            f"{_hour(hours.quantile(0.5, interpolation='lower'))}.")


def quarantine_by_reason(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined records per (reason, target table), most first. The input has a list of `reasons`
    per row and, when already counted per distinct list, a `records` column (else one record a row).
    A record with several reasons counts once under each."""
    columns = ["reason", "table", "records"]
    if quarantine.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "records" else "object") for c in columns})
    rows = quarantine.assign(records=quarantine["records"] if "records" in quarantine else 1)
    rows = rows.assign(reasons=rows["reasons"].map(list)).explode("reasons")
    rows["table"] = rows["target_table"].fillna(UNKNOWN_TABLE)
    counted = rows.groupby(["reasons", "table"], as_index=False)["records"].sum().rename(columns={"reasons": "reason"})
    return counted.sort_values(["records", "reason", "table"], ascending=[False, True, True]).reset_index(drop=True)[
        columns].astype({"records": "int64"})


def reconciliation_frame(rows: list[dict]) -> pd.DataFrame:
    """The reconciliation (silver.reconcile) as a frame: records in = silver rows + duplicates + quarantined."""
    return pd.DataFrame(rows, columns=["table", "records_in", "silver_rows", "duplicates", "quarantined", "holds"])


def display_reconciliation(checks: pd.DataFrame) -> pd.DataFrame:
    shown = checks.assign(**{c: checks[c].map(_int) for c in ("records_in", "silver_rows", "duplicates",
                                                                "quarantined")},
                          holds=checks["holds"].map(lambda ok: "yes" if ok else "NO"))
    return shown.rename(columns=lambda c: c.replace("_", " "))


def read_quality(by_reason: pd.DataFrame, quarantined_records: int, reconciliation: pd.DataFrame) -> str:
    if quarantined_records:
        top = by_reason.iloc[0]
        text = (f"{quarantined_records:,} records quarantined, most often for {top['reason']} "
                f"({int(top['records']):,} in {top['table']})")
    else:
        text = "No record failed validation"
    if reconciliation.empty:
        return text + "; no reconciliation yet (silver has not run)."
    broken = reconciliation.loc[~reconciliation["holds"].astype(bool), "table"].tolist()
    if broken:
        return text + f"; the reconciliation is BROKEN for {', '.join(broken)}."
    return text + (f"; records in = silver + duplicates + quarantine holds for all {len(reconciliation)} "
                   f"tables.")


# --- learned segments ---------------------------------------------------------------------

def display_agreement(agreement: dict) -> pd.DataFrame:
    """Rule segment x learned cluster (headed by the cluster's majority segment), with row totals."""
    crosstab = agreement["crosstab"]
    shown = pd.DataFrame({"rule segment": crosstab.index})
    for cluster in crosstab.columns:
        shown[f"cluster {cluster} ({agreement['cluster_segment'][cluster]})"] = crosstab[cluster].map(_int).values
    shown["users"] = crosstab.sum(axis=1).map(_int).values
    return shown


def display_cluster_profiles(agreement: dict) -> pd.DataFrame:
    profiles = agreement["cluster_profiles"]
    shown = pd.DataFrame({"cluster": profiles.index.astype(str),
                          "majority segment": [agreement["cluster_segment"][c] for c in profiles.index],
                          "users": profiles["users"].map(_int).values})
    for column, label in PROFILE_COLUMNS.items():
        if column in profiles:
            shown[label] = profiles[column].map((lambda v: _pct(v, 1)) if column == "mean_sleep_efficiency"
                                                else _int).values
    return shown


def read_agreement(agreement: dict | None, skipped: str | None) -> str:
    if agreement is None:
        return f"No learned segments this run: {skipped}."
    return (f"The {agreement['clusters']} learned clusters, each named after the rule segment most of its "
            f"users have, agree with the rule segment for {agreement['agreeing_users']} of "
            f"{agreement['users']} users ({agreement['agreement_share']:.0%}); adjusted Rand index "
            f"{agreement['adjusted_rand_index']:.2f} (1 = the same grouping, 0 = chance).")


# --- all findings -------------------------------------------------------------------------

def analyse(tables: dict[str, pd.DataFrame], config: InsightsConfig, reconciliation: list[dict],
            agreement: dict | None = None, model_skipped: str | None = None) -> tuple[dict, list[Finding]]:
    """The report's KPI summary and findings, in report order, from the frames run_insights read:
    kpi (kpi_daily_wellness with date and day_of_week), users (dim_user), daily (fact_daily_activity),
    sleep (fact_sleep), hourly (fact_hourly_activity with day_of_week), alerts (goal_alerts),
    quarantine (target_table, reasons[, records])."""
    kpi, users, daily, sleep = tables["kpi"], tables["users"], tables["daily"], tables["sleep"]
    hourly = on_valid_days(tables["hourly"], kpi)
    bands, min_pairs = config.correlation_bands, config.min_pairs_for_correlation
    summary = kpi_summary(kpi, users)
    findings = [Finding("kpi-tiles", "Headline figures", read_kpis(summary), data=kpi_tiles(summary))]

    trend = wellness_trend(kpi)
    findings.append(Finding("wellness-trend", "Wellness score per day", read_trend(trend), data=trend))
    counts = segment_counts(users, config.segment_order)
    findings.append(Finding("engagement-segments", "Engagement segments",
                            read_segments(counts, config.segment_cutoffs), data=counts))
    hours = hourly_pattern(hourly)
    findings.append(Finding("hourly-pattern", "Steps by hour of day", read_hourly(hours), data=hours))
    weekdays = weekday_pattern(kpi)
    findings.append(Finding("weekday-pattern", "Steps by weekday", read_weekday(weekdays), data=weekdays))
    grid = weekday_hour_steps(hourly)
    findings.append(Finding("weekday-hour-heatmap", "Steps by weekday and hour", read_heatmap(grid), data=grid))

    sleep_analysis = sleep_efficiency_analysis(sleep, min_pairs, config.low_sleep_efficiency)
    findings.append(Finding("sleep-efficiency", "Sleep efficiency: time asleep against time in bed",
                            read_sleep(sleep_analysis, bands), data=sleep_analysis))
    steps_calories = steps_calories_pairs(daily)
    stats = pearson(steps_calories["total_steps"], steps_calories["calories"], min_pairs)
    findings.append(Finding("steps-vs-calories", "Steps against calories",
                            read_correlation(stats, "steps", "Calories", "valid days", bands),
                            data={"pairs": steps_calories, **stats}))
    sedentary = sedentary_sleep_pairs(daily, sleep)
    stats = pearson(sedentary["sedentary_minutes"], sedentary["minutes_asleep"], min_pairs)
    findings.append(Finding("sedentary-vs-sleep", "Sedentary minutes against minutes asleep",
                            read_correlation(stats, "sedentary minutes", "Minutes asleep",
                                             "valid days with sleep", bands),
                            data={"pairs": sedentary, **stats}))

    profiles = segment_profiles(user_features(daily, sleep, kpi), users, config.segment_order)
    findings.append(Finding("segment-profiles", "Profiles of the engagement segments", read_profiles(profiles),
                            data=profiles, table=display_profiles(profiles)))
    recent = recent_alerts(tables["alerts"], config.recent_alerts)
    findings.append(Finding("goal-alerts", "Recent goal alerts", read_alerts(tables["alerts"]), data=recent,
                            table=display_alerts(recent)))

    by_reason = quarantine_by_reason(tables["quarantine"])
    quarantine = tables["quarantine"]
    quarantined = int(quarantine["records"].sum() if "records" in quarantine else len(quarantine))
    checks = reconciliation_frame(reconciliation)
    findings.append(Finding(
        "data-quality", "Data quality", read_quality(by_reason, quarantined, checks),
        data={"by_reason": by_reason, "reconciliation": checks, "quarantined_records": quarantined},
        table=by_reason.assign(records=by_reason["records"].map(_int))
        .rename(columns={"records": "records with this reason"}),
        extra={"reconciliation": display_reconciliation(checks)}))

    findings.append(Finding(
        "learned-segments", "Learned segments against the rule-based ones", read_agreement(agreement, model_skipped),
        data=agreement, table=display_agreement(agreement) if agreement else None,
        extra={"cluster_profiles": display_cluster_profiles(agreement)} if agreement else {}))
    return summary, findings


# --- reading, MLflow and writing ----------------------------------------------------------

# table -> the columns the report reads (every table is read at a pinned Delta version)
GOLD_INPUTS = {
    "kpi_daily_wellness": ["user_key", "date_key", "wellness_score", "sleep_efficiency", "active_minutes",
                           "daily_segment", "total_steps"],
    "dim_user": ["user_key", "engagement_segment", "avg_active_minutes", "valid_days"],
    "dim_date": ["date_key", "date", "day_of_week"],
    "fact_daily_activity": ["user_key", "date_key", "total_steps", "calories", "active_minutes",
                            "sedentary_minutes", "is_valid_day"],
    "fact_sleep": ["user_key", "date_key", "minutes_asleep", "time_in_bed", "sleep_efficiency"],
    "fact_hourly_activity": ["user_key", "date_key", "hour", "steps"],
    "goal_alerts": ["user_key", "date_key", "goal_steps", "reached_at", "steps_at_alert"],
}


@dataclass
class Inputs:
    """What run_insights read: frames by table, and each table's Delta version and row count."""
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


_REASONS_SEPARATOR = "\x1f"   # joins a record's reasons into one groupable text (no rule name holds it)


def _read_with_delta_rs(path: str, columns: list[str], quarantine: bool):
    """(frame, version) of a Delta folder read with delta-rs, no Spark job; None when delta-rs cannot
    read it (not installed, or a table feature it does not support); (None, None) when there is no table."""
    try:
        import pyarrow.compute as pc
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError
    except ImportError:
        return None
    try:
        table = DeltaTable(path)
        if not quarantine:
            return table.to_pandas(columns=columns), table.version()
        rows = table.to_pyarrow_table(columns=["target_table", "reasons"])
        rows = rows.append_column("reason_text", pc.binary_join(rows["reasons"], _REASONS_SEPARATOR))
        counted = rows.group_by(["target_table", "reason_text"]).aggregate([([], "count_all")]).to_pandas()
        frame = pd.DataFrame({"target_table": counted["target_table"],
                              "reasons": counted["reason_text"].str.split(_REASONS_SEPARATOR),
                              "records": counted["count_all"].astype("int64")})
        return frame, table.version()
    except TableNotFoundError:
        return None, None
    except Exception:   # noqa: BLE001 - a protocol or type delta-rs cannot read: Spark reads it
        log.debug("insights: delta-rs cannot read %s; reading it with Spark", path, exc_info=True)
        return None


def _read_with_spark(lake: Lake, layer: str, name: str, columns: list[str], quarantine: bool):
    """(frame, version) read by Spark at the version it pins first; (None, None) when there is no table."""
    from pyspark.sql import functions as F

    version = lake.version(layer, name)
    if version is None:
        return None, None
    frame = lake.read(layer, name, version=version)
    if quarantine:   # counted per distinct list of reasons: hostile input may quarantine millions
        return frame.groupBy("target_table", "reasons").agg(F.count("*").alias("records")).toPandas(), version
    return frame.select(*columns).toPandas(), version


def _read_pinned(lake: Lake, layer: str, name: str, columns: list[str], quarantine: bool = False):
    """A table's columns and the Delta version they are from: a lake of folders is read with delta-rs
    (seconds less per table than a Spark job), catalog tables (Databricks) with Spark."""
    read = _read_with_delta_rs(lake.path(layer, name), columns, quarantine) if lake.by_path else None
    return read if read is not None else _read_with_spark(lake, layer, name, columns, quarantine)


def _read_inputs(spark, settings: Settings) -> Inputs:
    from .silver import QUARANTINE

    lake = Lake(spark, settings)
    inputs = Inputs()
    for name, columns in GOLD_INPUTS.items():
        frame, version = _read_pinned(lake, "gold", name, columns)
        if version is None:   # e.g. no sleep or no hourly file in the input: an empty section, not a failure
            frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        else:
            inputs.versions[f"gold.{name}"] = version
        inputs.frames[name] = frame
        inputs.rows[f"gold.{name}"] = len(frame)
    quarantine, version = _read_pinned(lake, "silver", QUARANTINE, ["target_table", "reasons"], quarantine=True)
    if version is None:
        quarantine = pd.DataFrame({"target_table": [], "reasons": [], "records": []})
    else:
        inputs.versions[f"silver.{QUARANTINE}"] = version
    inputs.frames[QUARANTINE] = quarantine
    inputs.rows[f"silver.{QUARANTINE}"] = int(quarantine["records"].sum())
    return inputs


def _frames_for_analysis(inputs: Inputs) -> dict[str, pd.DataFrame]:
    f = inputs.frames
    dim_date = f["dim_date"]
    daily = f["fact_daily_activity"].astype({"is_valid_day": bool}) if len(f["fact_daily_activity"]) \
        else f["fact_daily_activity"].assign(is_valid_day=pd.Series(dtype=bool))
    return {"kpi": with_calendar(f["kpi_daily_wellness"], dim_date), "users": f["dim_user"], "daily": daily,
            "sleep": f["fact_sleep"], "hourly": with_calendar(f["fact_hourly_activity"], dim_date),
            "alerts": f["goal_alerts"], "quarantine": f["quarantine"]}


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def run_params(settings: Settings) -> dict:
    """The settings a report and a model follow (kpi.*, insights.*, mlflow.model.*), and its input."""
    return {**_flat({"kpi": settings.get("kpi"), "insights": settings.get("insights"),
                     "model": settings.get("mlflow.model")}),
            "raw_dir": str(settings.raw_dir), "lake_dir": str(settings.lake_dir)}


def require_tracking_server(settings: Settings) -> None:
    """An MLflow server that does not answer at an http(s) tracking URI: one line now, rather than
    MLflow's retries for minutes at the end of a run."""
    from urllib.parse import urlsplit

    from .config import ConfigError, masked
    from .kafka_broker import port_open

    uri = settings.mlflow_tracking_uri
    where = urlsplit(uri)
    if where.scheme not in ("http", "https") or not where.hostname:
        return
    port = where.port or (443 if where.scheme == "https" else 80)
    if not port_open(where.hostname, port, timeout=float(settings.get("mlflow.connect_timeout_s"))):
        raise ConfigError(f"No MLflow tracking server answers at {masked(uri)} (MLFLOW_TRACKING_URI): start it, "
                          f"or unset MLFLOW_TRACKING_URI to keep the runs in the SQLite store under the lake.")


def start_experiment(settings: Settings) -> None:
    """Tracking and registry URIs, and the experiment (created with its artifacts beside the tracking
    store under the lake, not in the working directory)."""
    import mlflow

    require_tracking_server(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.get("mlflow.registry_uri") or settings.mlflow_tracking_uri)
    name = settings.get("mlflow.experiment")
    artifacts_under = settings.get("mlflow.artifact_location")
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(settings.lake_dir / artifacts_under).resolve().as_uri()
                                 if artifacts_under else None)
    mlflow.set_experiment(name)


def report_inputs(lake: Lake, settings: Settings) -> dict:
    """What a report follows from: the Delta versions of the tables it reads, and the settings it applies
    (where its MLflow run goes included)."""
    from .silver import INGEST_LOG, QUARANTINE

    tables = [("gold", name) for name in GOLD_INPUTS] + [("silver", QUARANTINE), ("silver", INGEST_LOG)]
    return {"versions": {f"{layer}.{name}": lake.version(layer, name) for layer, name in tables},
            "settings": {**run_params(settings), "mlflow.tracking_uri": settings.mlflow_tracking_uri,
                         "mlflow.experiment": settings.get("mlflow.experiment")}}


def _state_file(settings: Settings) -> Path:
    return settings.reports_dir / "insights_state.json"


def _kept_report(settings: Settings, inputs: dict) -> dict | None:
    """The last run's result when the report follows from exactly these inputs and is still there."""
    try:
        state = json.loads(_state_file(settings).read_text())
    except (OSError, ValueError):
        return None
    result = state.get("result") or {}
    kept = state.get("inputs") == json.loads(json.dumps(inputs, default=str)) and all(
        Path(result.get(k) or "").is_file() for k in ("report", "html_report"))
    return {**result, "unchanged": True} if kept else None


def run_insights(spark, settings: Settings) -> dict:
    """Read gold (and silver's quarantine and reconciliation), train and register the learned segments,
    write the Markdown and HTML reports with their charts; all in one MLflow run. When none of the tables
    it reads has a new version and no setting it follows changed, the last report stands (no new run)."""
    from .gold import require_gold_of

    require_gold_of(settings)
    inputs_now = report_inputs(Lake(spark, settings), settings)
    kept = _kept_report(settings, inputs_now)
    if kept is not None:
        log.info("insights: gold unchanged since the last report: kept %s", kept["html_report"])
        return kept
    result = _write_insights(spark, settings)
    state = {"inputs": inputs_now, "result": result}
    _state_file(settings).write_text(json.dumps(state, default=str, indent=1))
    return {**result, "unchanged": False}


def _write_insights(spark, settings: Settings) -> dict:
    import mlflow

    from . import engagement_model, report
    from .silver import reconcile

    started = time.monotonic()
    config = InsightsConfig.from_settings(settings)
    inputs = _read_inputs(spark, settings)
    tables = _frames_for_analysis(inputs)
    reconciliation = [r.as_dict() for r in reconcile(spark, settings)]
    log.info("insights: %d tables read and reconciled in %.1f s", len(inputs.rows), time.monotonic() - started)
    model_config = engagement_model.ModelConfig.from_settings(settings)
    features = user_features(tables["daily"], tables["sleep"])
    model_inputs = engagement_model.model_inputs(features, model_config)
    skipped = engagement_model.why_no_model(model_inputs, model_config)
    model = agreement = None
    if skipped is None:
        model = engagement_model.train(model_inputs, model_config)
        clusters = engagement_model.assign_clusters(model, model_inputs)
        rule = tables["users"].set_index("user_key")["engagement_segment"]
        agreement = engagement_model.segment_agreement(rule, clusters, config.segment_order, features)
    else:
        log.warning("insights: no learned segments: %s", skipped)
    summary, findings = analyse(tables, config, reconciliation, agreement, skipped)

    out = settings.reports_dir
    started = time.monotonic()
    start_experiment(settings)
    with mlflow.start_run(run_name=f"insights-{datetime.now():%Y%m%d-%H%M%S}") as run:
        mlflow.log_params(run_params(settings))
        mlflow.log_params({f"delta_version.{table}": v for table, v in inputs.versions.items()})
        mlflow.set_tags({f"delta_version.{table}": v for table, v in inputs.versions.items()})
        mlflow.log_metrics({f"rows.{table}": float(n) for table, n in inputs.rows.items()})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        mlflow.log_dict(summary, "kpi_summary.json")
        model_ref = None
        if model is not None:
            name = engagement_model.registered_name(settings)
            info = engagement_model.log_model(model, model_inputs, name, model_config)
            model_ref = {"name": name, "version": info.registered_model_version, "uri": info.model_uri}
            mlflow.log_metrics({"model.users": float(agreement["users"]),
                                "model.agreement_share": agreement["agreement_share"],
                                "model.adjusted_rand_index": agreement["adjusted_rand_index"],
                                "model.inertia": float(model[-1].inertia_)})
        else:
            mlflow.set_tag("model.skipped", skipped)
        meta = {"generated": datetime.now(), "lake": str(settings.lake_dir), "mlflow_run_id": run.info.run_id,
                "model": model_ref, "versions": inputs.versions}
        written = report.write_reports(summary, findings, meta, out, settings)
        for path in [written.markdown, written.html, *written.charts]:
            mlflow.log_artifact(str(path))
        run_id = run.info.run_id
    log.info("insights: reports %s and %s, MLflow run %s (model, reports and run in %.1f s)", written.markdown,
             written.html, run_id, time.monotonic() - started)
    return {"summary": summary, "charts": [str(c) for c in written.charts], "report": str(written.markdown),
            "html_report": str(written.html), "mlflow_run_id": run_id, "model": model_ref,
            "model_skipped": skipped, "readings": {f.id: f.reading for f in findings}}


def export_bi(spark, settings: Settings) -> list[Path]:
    """`make export`: every gold table as Parquet and CSV under <reports>/bi/ for Power BI / Tableau."""
    import pyarrow.parquet as pq

    from .gold import GOLD_KEYS

    lake = Lake(spark, settings)
    out = settings.reports_dir / "bi"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(GOLD_KEYS):
        if not lake.exists("gold", name):
            continue
        # through Arrow: a whole-number column with nulls stays whole (pandas' own would make it 458.0)
        table = lake.read("gold", name).toArrow()
        for suffix, write in ((".parquet", lambda p: pq.write_table(table, p)),
                              (".csv", lambda p: table.to_pandas(types_mapper=pd.ArrowDtype).to_csv(p, index=False))):
            path = out / f"{name}{suffix}"
            write(path)
            written.append(path)
    return written
