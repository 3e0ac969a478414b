"""The source-file catalogue: one declarative entry per Fitbit file kind.

The producer, silver and the synthetic generator all read it; adding a kind is one entry.
Column types: id (positive bigint), long, double, bool, date, timestamp.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DATE_FORMAT = "M/d/yyyy"                 # 4/12/2016
TIMESTAMP_FORMAT = "M/d/yyyy h:mm:ss a"  # 4/12/2016 12:00:00 AM
PY_DATE_FORMAT = "%m/%d/%Y"
PY_TIMESTAMP_FORMAT = "%m/%d/%Y %I:%M:%S %p"

# The Kafka headers of an events message (its value: one or more CSV lines of one file, see produce.py)
HEADER_KIND = "kind"              # the file's kind, e.g. dailyActivity
HEADER_FILE = "source_file"       # the file, relative to the raw folder
HEADER_ROW = "first_row"          # data row number of the first line (the header line is row 0)
HEADER_COLUMNS = "header"         # the file's header line


@dataclass(frozen=True)
class Column:
    source: str            # CSV header
    name: str              # silver column (snake_case)
    type: str              # id | long | double | bool | date | timestamp
    nullable: bool = False  # an empty field is a null, not an error (weightLogInfo Fat)
    divisor: int = 1       # silver value = source value / divisor (METs x 10 -> METs)
    checks: tuple[str, ...] = ()  # value rules beyond the type's own (see quality.py)


@dataclass(frozen=True)
class Melt:
    """A *Wide file: one row per hour with 60 minute columns <prefix>00..<prefix>59."""
    prefix: str
    value: Column          # the minute value column, as in the Narrow kind
    minutes: int = 60


@dataclass(frozen=True)
class FileKind:
    kind: str              # event type, e.g. "dailyActivity"
    file_stem: str         # dailyActivity_merged.csv -> "dailyActivity"
    table: str             # silver table
    columns: tuple[Column, ...]   # silver columns (after a melt, for Wide kinds)
    time_column: str       # silver name of the time column
    key: tuple[str, ...]   # natural key (silver names)
    # SQL expressions over silver columns, compared before recency when two records share a key:
    # daily summaries are cumulative, so the one with more steps / tracked minutes wins.
    prefer: tuple[str, ...] = ()
    row_checks: tuple[str, ...] = ()   # cross-field rules
    melt: Melt | None = None
    months: tuple[int, ...] = (1, 2)   # Kaggle months that ship this file

    @property
    def file_name(self) -> str:
        return f"{self.file_stem}_merged.csv"

    @property
    def header(self) -> list[str]:
        """The CSV header of the file, in order."""
        if self.melt is None:
            return [c.source for c in self.columns]
        fixed = [c.source for c in self.columns if c.name != self.melt.value.name]
        return fixed + [f"{self.melt.prefix}{i:02d}" for i in range(self.melt.minutes)]

    @property
    def time(self) -> Column:
        return next(c for c in self.columns if c.name == self.time_column)

    @property
    def id_column(self) -> Column:
        return next(c for c in self.columns if c.type == "id")

    def value_columns(self) -> list[Column]:
        return [c for c in self.columns if c.type not in ("id", "date", "timestamp")]


def _c(source: str, name: str, type_: str, *checks: str, **kw) -> Column:
    return Column(source, name, type_, checks=tuple(checks), **kw)


ID = _c("Id", "fitbit_id", "id")
DAILY_MINUTES = "daily_minutes_above_max"
TRACKED = "very_active_minutes + fairly_active_minutes + lightly_active_minutes + sedentary_minutes"
_DAILY_MINUTE_COLS = (
    _c("VeryActiveMinutes", "very_active_minutes", "long", DAILY_MINUTES),
    _c("FairlyActiveMinutes", "fairly_active_minutes", "long", DAILY_MINUTES),
    _c("LightlyActiveMinutes", "lightly_active_minutes", "long", DAILY_MINUTES),
    _c("SedentaryMinutes", "sedentary_minutes", "long", DAILY_MINUTES),
)
_DAILY_DISTANCE_COLS = (
    _c("VeryActiveDistance", "very_active_distance", "double"),
    _c("ModeratelyActiveDistance", "moderately_active_distance", "double"),
    _c("LightActiveDistance", "light_active_distance", "double"),
    _c("SedentaryActiveDistance", "sedentary_active_distance", "double"),
)
_by_name = {c.source: c for c in _DAILY_MINUTE_COLS + _DAILY_DISTANCE_COLS}

MINUTE_STEPS = _c("Steps", "steps", "long", "steps_per_minute_above_max")
MINUTE_CALORIES = _c("Calories", "calories", "double")
MINUTE_INTENSITY = _c("Intensity", "intensity", "long", "minute_intensity_out_of_range")


def _minute_kind(stem: str, table: str, value: Column) -> FileKind:
    return FileKind(stem, stem, table,
                    (ID, _c("ActivityMinute", "activity_minute", "timestamp"), value),
                    "activity_minute", ("fitbit_id", "activity_minute"))


def _wide_kind(stem: str, table: str, prefix: str, value: Column, months=(2,)) -> FileKind:
    # Wide rows carry ActivityHour; melted into the Narrow table's activity_minute.
    return FileKind(stem, stem, table,
                    (ID, _c("ActivityHour", "activity_minute", "timestamp"), value),
                    "activity_minute", ("fitbit_id", "activity_minute"),
                    melt=Melt(prefix, value), months=months)


KINDS: tuple[FileKind, ...] = (
    FileKind("dailyActivity", "dailyActivity", "daily_activity", (
        ID, _c("ActivityDate", "activity_date", "date"),
        _c("TotalSteps", "total_steps", "long"),
        _c("TotalDistance", "total_distance", "double"),
        _c("TrackerDistance", "tracker_distance", "double"),
        _c("LoggedActivitiesDistance", "logged_activities_distance", "double"),
        *_DAILY_DISTANCE_COLS, *_DAILY_MINUTE_COLS,
        _c("Calories", "calories", "long"),
    ), "activity_date", ("fitbit_id", "activity_date"),
        prefer=("total_steps", TRACKED), row_checks=("daily_minutes_sum_above_max",)),
    FileKind("dailyCalories", "dailyCalories", "daily_calories", (
        ID, _c("ActivityDay", "activity_date", "date"), _c("Calories", "calories", "long"),
    ), "activity_date", ("fitbit_id", "activity_date"), months=(2,)),   # no steps or minutes: the newer wins
    FileKind("dailyIntensities", "dailyIntensities", "daily_intensities", (
        ID, _c("ActivityDay", "activity_date", "date"),
        *(_by_name[n] for n in ("SedentaryMinutes", "LightlyActiveMinutes", "FairlyActiveMinutes",
                                "VeryActiveMinutes", "SedentaryActiveDistance", "LightActiveDistance",
                                "ModeratelyActiveDistance", "VeryActiveDistance")),
    ), "activity_date", ("fitbit_id", "activity_date"),
        prefer=(TRACKED,), row_checks=("daily_minutes_sum_above_max",), months=(2,)),
    FileKind("dailySteps", "dailySteps", "daily_steps", (
        ID, _c("ActivityDay", "activity_date", "date"), _c("StepTotal", "step_total", "long"),
    ), "activity_date", ("fitbit_id", "activity_date"), prefer=("step_total",), months=(2,)),
    FileKind("sleepDay", "sleepDay", "sleep_day", (
        ID, _c("SleepDay", "sleep_day", "timestamp"),
        _c("TotalSleepRecords", "total_sleep_records", "long"),
        _c("TotalMinutesAsleep", "total_minutes_asleep", "long", DAILY_MINUTES),
        _c("TotalTimeInBed", "total_time_in_bed", "long", DAILY_MINUTES),
    ), "sleep_day", ("fitbit_id", "sleep_day"), row_checks=("asleep_above_time_in_bed",),
        months=(2,)),
    FileKind("hourlySteps", "hourlySteps", "hourly_steps", (
        ID, _c("ActivityHour", "activity_hour", "timestamp"), _c("StepTotal", "step_total", "long"),
    ), "activity_hour", ("fitbit_id", "activity_hour")),
    FileKind("hourlyCalories", "hourlyCalories", "hourly_calories", (
        ID, _c("ActivityHour", "activity_hour", "timestamp"), _c("Calories", "calories", "long"),
    ), "activity_hour", ("fitbit_id", "activity_hour")),
    FileKind("hourlyIntensities", "hourlyIntensities", "hourly_intensities", (
        ID, _c("ActivityHour", "activity_hour", "timestamp"),
        _c("TotalIntensity", "total_intensity", "long"),
        _c("AverageIntensity", "average_intensity", "double"),
    ), "activity_hour", ("fitbit_id", "activity_hour")),
    _minute_kind("minuteStepsNarrow", "minute_steps", MINUTE_STEPS),
    _minute_kind("minuteCaloriesNarrow", "minute_calories", MINUTE_CALORIES),
    _minute_kind("minuteIntensitiesNarrow", "minute_intensities", MINUTE_INTENSITY),
    _minute_kind("minuteMETsNarrow", "minute_mets", _c("METs", "mets", "double", divisor=10)),
    _wide_kind("minuteStepsWide", "minute_steps", "Steps", MINUTE_STEPS),
    _wide_kind("minuteCaloriesWide", "minute_calories", "Calories", MINUTE_CALORIES),
    _wide_kind("minuteIntensitiesWide", "minute_intensities", "Intensity", MINUTE_INTENSITY),
    FileKind("minuteSleep", "minuteSleep", "minute_sleep", (
        ID, _c("date", "sleep_minute", "timestamp"),
        _c("value", "value", "long", "minute_sleep_out_of_range"),
        _c("logId", "log_id", "long"),
    ), "sleep_minute", ("fitbit_id", "sleep_minute")),
    FileKind("heartrate_seconds", "heartrate_seconds", "heart_rate", (
        ID, _c("Time", "time", "timestamp"),
        _c("Value", "bpm", "long", "heart_rate_out_of_range"),
    ), "time", ("fitbit_id", "time")),
    FileKind("weightLogInfo", "weightLogInfo", "weight_log", (
        ID, _c("Date", "logged_at", "timestamp"),
        _c("WeightKg", "weight_kg", "double"),
        _c("WeightPounds", "weight_pounds", "double"),
        _c("Fat", "fat", "double", nullable=True),
        _c("BMI", "bmi", "double"),
        _c("IsManualReport", "is_manual_report", "bool"),
        _c("LogId", "log_id", "long"),
    ), "logged_at", ("fitbit_id", "log_id")),
)

BY_KIND = {k.kind: k for k in KINDS}
SILVER_TABLES = tuple(dict.fromkeys(k.table for k in KINDS))
UNKNOWN_KIND = "unknown"

_NAME = re.compile(r"^(?P<stem>[A-Za-z_]+?)_merged\.csv$", re.IGNORECASE)
_MONTH_DIR = re.compile(r"(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+)")


def kinds_for_table(table: str) -> list[FileKind]:
    return [k for k in KINDS if k.table == table]


def kind_of_file(path: Path) -> FileKind | None:
    """The kind of a CSV by its name (case-insensitive), or None for an unknown file."""
    match = _NAME.match(path.name)
    if not match:
        return None
    stem = match.group("stem").lower()
    return next((k for k in KINDS if k.file_stem.lower() == stem), None)


@dataclass
class SourceScan:
    files: list[tuple[Path, FileKind]] = field(default_factory=list)
    unknown: list[Path] = field(default_factory=list)
    outside: list[Path] = field(default_factory=list)   # links (files, folders) that lead out of the raw folder: refused
    unreadable: list[tuple[Path, str]] = field(default_factory=list)   # folders that could not be listed, why
    archives: list[Path] = field(default_factory=list)   # zip files (the Kaggle download, not unzipped)


UNKNOWN_MONTH = (9999, 99, 99)


def month_order(path: Path) -> tuple:
    """Month-1 folders before month-2 ones, so replays run in the order of time (a file of no month
    folder: UNKNOWN_MONTH, last)."""
    match = _MONTH_DIR.search(str(path.parent))
    if not match:
        return UNKNOWN_MONTH
    month, day, year = (int(match.group(i)) for i in (1, 2, 3))
    return (year, month, day)


def scan_sources(raw_dir: Path) -> SourceScan:
    """Every CSV below raw_dir (flat or Kaggle month folders), recognised or listed as unknown."""
    scan = SourceScan()
    if not raw_dir.is_dir():
        return scan
    root = raw_dir.resolve()
    found: list[Path] = []
    # os.walk, not Path.rglob: rglob passes over a folder it may not list without a word
    for folder, subfolders, names in os.walk(raw_dir, onerror=lambda e: scan.unreadable.append((Path(e.filename),
                                                                                                  e.strerror))):
        found += [Path(folder) / name for name in names]
        # a linked folder is not walked into: one that leads out of the raw folder is refused like a linked file
        scan.outside += [Path(folder) / name for name in sorted(subfolders) if (Path(folder) / name).is_symlink()
                         and not (Path(folder) / name).resolve().is_relative_to(root)]
    for path in sorted(found, key=lambda p: (month_order(p), str(p))):
        if path.suffix.lower() == ".zip":
            scan.archives.append(path)
        if not path.is_file() or path.suffix.lower() != ".csv":
            continue
        if not path.resolve().is_relative_to(root):
            scan.outside.append(path)
            continue
        kind = kind_of_file(path)
        if kind is None:
            scan.unknown.append(path)
        else:
            scan.files.append((path, kind))
    return scan
