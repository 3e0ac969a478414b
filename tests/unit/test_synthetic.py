"""The synthetic Fitbit generator: Kaggle format, internal consistency, months, dirty rows."""
from __future__ import annotations

import calendar
import json
from collections import Counter, defaultdict
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import pytest

from fitbit_lakehouse import synthetic
from fitbit_lakehouse.catalogue import (BY_KIND, KINDS, PY_DATE_FORMAT, PY_TIMESTAMP_FORMAT, FileKind,
                                        kind_of_file, scan_sources)

M1, M2 = synthetic.MONTH_DIRS[1], synthetic.MONTH_DIRS[2]
OVERLAP = "4/12/2016"

# the validation limits of conf/base.yml
MAX_DAILY_MINUTES, HR_RANGE, INTENSITY_RANGE, SLEEP_RANGE, MAX_STEPS = 1440, (20, 250), (0, 3), (1, 3), 300


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("clean")
    return out, synthetic.generate(out)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("dirty")
    return out, synthetic.generate(out, dirty_rows=True)


# ---------------------------------------------------------------------------------------------------
# helpers


@lru_cache(maxsize=None)
def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    text = path.read_bytes().decode("ascii")
    lines = text.split("\r\n")
    assert lines[-1] == "", f"{path.name}: no trailing CRLF"
    return lines[0].split(","), [line.split(",") for line in lines[1:-1]]


@lru_cache(maxsize=None)
def _ts(value: str) -> datetime:
    return datetime.strptime(value, PY_TIMESTAMP_FORMAT)


@lru_cache(maxsize=None)
def _day(value: str) -> date:
    return datetime.strptime(value, PY_DATE_FORMAT).date()


def _rows(out: Path, month: int, kind: str, dirty_lines: frozenset = frozenset()) -> list[dict[str, str]]:
    path = out / synthetic.MONTH_DIRS[month] / BY_KIND[kind].file_name
    header, rows = _read(path)
    return [dict(zip(header, r)) for r in rows if ",".join(r) not in dirty_lines]


def _dirty_lines(out: Path) -> frozenset:
    return frozenset(entry["line"] for entry in synthetic.read_dirty_rows(out))


def _columns(kind: FileKind) -> dict:
    columns = {c.source: c for c in kind.columns}
    if kind.melt:
        columns.update({h: kind.melt.value for h in kind.header if h not in columns})
    return columns


def _violates(check: str, value: float) -> bool:
    return {
        "daily_minutes_above_max": lambda v: v > MAX_DAILY_MINUTES,
        "steps_per_minute_above_max": lambda v: v > MAX_STEPS,
        "minute_intensity_out_of_range": lambda v: not INTENSITY_RANGE[0] <= v <= INTENSITY_RANGE[1],
        "minute_sleep_out_of_range": lambda v: not SLEEP_RANGE[0] <= v <= SLEEP_RANGE[1],
        "heart_rate_out_of_range": lambda v: not HR_RANGE[0] <= v <= HR_RANGE[1],
    }[check](value)


def broken_rules(kind: FileKind, header: list[str], fields: list[str]) -> set[str]:
    """The validation rules a row breaks (a small stand-in for the silver quality checks)."""
    if len(fields) != len(header):
        return {"field_count"}
    broken, values = set(), {}
    columns = _columns(kind)
    for source, raw in zip(header, fields):
        column = columns[source]
        if column.type == "id":
            if not (raw.isdigit() and int(raw) > 0):
                broken.add("id_not_positive_integer")
        elif column.type in ("date", "timestamp"):
            try:
                datetime.strptime(raw, PY_DATE_FORMAT if column.type == "date" else PY_TIMESTAMP_FORMAT)
            except ValueError:
                broken.add("timestamp_unparseable")
        elif column.type == "bool":
            if raw not in ("True", "False"):
                broken.add("not_a_bool")
        elif raw == "" and column.nullable:
            continue
        else:
            try:
                value = int(raw) if column.type == "long" else float(raw)
            except ValueError:
                broken.add("not_a_number")
                continue
            if value < 0:
                broken.add("negative_value")
            values[column.name] = value
            broken.update(check for check in column.checks if _violates(check, value))
    if "daily_minutes_sum_above_max" in kind.row_checks:
        names = ("very_active_minutes", "fairly_active_minutes", "lightly_active_minutes", "sedentary_minutes")
        if all(n in values for n in names) and sum(values[n] for n in names) > MAX_DAILY_MINUTES:
            broken.add("daily_minutes_sum_above_max")
    if "asleep_above_time_in_bed" in kind.row_checks:
        if values.get("total_minutes_asleep", 0) > values.get("total_time_in_bed", 0):
            broken.add("asleep_above_time_in_bed")
    return broken


def _key(kind: FileKind, row: dict[str, str]) -> tuple[str, str]:
    time_source = next(c.source for c in kind.columns if c.type in ("date", "timestamp"))
    return row["Id"], row[time_source]


# ---------------------------------------------------------------------------------------------------
# layout and format


def test_every_kind_of_both_months_is_written(clean):
    out, paths = clean
    for month in (1, 2):
        expected = {k.file_name for k in KINDS if month in k.months}
        written = {p.name for p in (out / synthetic.MONTH_DIRS[month]).iterdir()}
        assert written == expected
        assert len(written) == sum(month in k.months for k in KINDS)
    assert sorted(paths) == sorted(out.rglob("*.csv"))
    scan = scan_sources(out)
    assert not scan.unknown and len(scan.files) == len(paths)
    assert scan.files[0][0].parent.name == M1        # month 1 sorts first
    assert not (out / synthetic.DIRTY_SIDECAR).exists()


def test_flat_layout_is_month_2_only(tmp_path):
    paths = synthetic.generate(tmp_path, users=2, days=4, layout="flat")
    assert {p.name for p in paths} == {k.file_name for k in KINDS if 2 in k.months}
    assert all(p.parent == tmp_path for p in paths)


def test_headers_match_the_catalogue(clean):
    _, paths = clean
    for path in paths:
        kind = kind_of_file(path)
        assert path.read_bytes().split(b"\r\n", 1)[0].decode() == ",".join(kind.header)


def test_crlf_trailing_newline_no_bom_no_quotes(dirty):
    _, paths = dirty
    for path in paths:
        data = path.read_bytes()
        assert data.endswith(b"\r\n") and not data.startswith(b"\xef\xbb\xbf"), path.name
        assert data.count(b"\n") == data.count(b"\r\n") and b'"' not in data, path.name
        assert data.count(b"\r\n") > 1, f"{path.name} has no data row"


def test_same_arguments_give_the_same_bytes(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    paths = synthetic.generate(first, users=4, days=6, dirty_rows=True)
    synthetic.generate(second, users=4, days=6, dirty_rows=True)
    synthetic.generate(other, users=4, days=6, seed=8, dirty_rows=True)
    for path in paths + [first / synthetic.DIRTY_SIDECAR]:
        relative = path.relative_to(first)
        assert path.read_bytes() == (second / relative).read_bytes(), relative
    assert (first / M2 / "minuteStepsNarrow_merged.csv").read_bytes() != \
        (other / M2 / "minuteStepsNarrow_merged.csv").read_bytes()


def test_clean_times_parse_and_rows_are_sorted(dirty):
    out, paths = dirty
    dirty_lines = _dirty_lines(out)
    for path in paths:
        kind = kind_of_file(path)
        header, rows = _read(path)
        time_column = next(c for c in kind.columns if c.type in ("date", "timestamp"))
        position = header.index(time_column.source)
        parse = _day if time_column.type == "date" else _ts
        keys = [(int(r[0]), parse(r[position])) for r in rows if ",".join(r) not in dirty_lines]
        assert keys, path
        assert keys == sorted(keys), f"{path.name} is not sorted by Id, time"
        if kind.kind != "weightLogInfo":      # (Id, LogId) is weight's key; the others are unique
            assert len(set(keys)) == len(keys), f"{path.name} repeats a natural key"


def test_ids_are_ten_digits_some_above_2_pow_31(clean):
    out, _ = clean
    ids = sorted({int(r["Id"]) for r in _rows(out, 2, "dailyActivity")})
    assert len(ids) == 6 and all(len(str(i)) == 10 for i in ids)
    assert any(i > 2**31 for i in ids)


# ---------------------------------------------------------------------------------------------------
# dates


def test_month_1_has_the_dst_gap_hour(clean):
    out, _ = clean
    hours = {r["ActivityHour"] for r in _rows(out, 1, "hourlySteps")}
    assert "3/13/2016 2:00:00 AM" in hours
    minutes = {r["ActivityMinute"] for r in _rows(out, 1, "minuteStepsNarrow")}
    assert "3/13/2016 2:30:00 AM" in minutes


def test_days_are_split_between_the_months(clean):
    out, _ = clean
    month1 = sorted({_day(r["ActivityDate"]) for r in _rows(out, 1, "dailyActivity")})
    month2 = sorted({_day(r["ActivityDate"]) for r in _rows(out, 2, "dailyActivity")})
    assert month1 == [date(2016, 3, d) for d in range(12, 17)] + [date(2016, 4, 12)]
    assert month2 == [date(2016, 4, d) for d in range(12, 17)]


def test_months_overlap_on_4_12_with_a_partial_month_1_day(clean):
    out, _ = clean
    tracked = ("VeryActiveMinutes", "FairlyActiveMinutes", "LightlyActiveMinutes", "SedentaryMinutes")
    first = {r["Id"]: r for r in _rows(out, 1, "dailyActivity") if r["ActivityDate"] == OVERLAP}
    second = {r["Id"]: r for r in _rows(out, 2, "dailyActivity") if r["ActivityDate"] == OVERLAP}
    assert first.keys() == second.keys() and len(first) == 6
    for uid in first:
        assert int(first[uid]["TotalSteps"]) < int(second[uid]["TotalSteps"])
        assert sum(int(first[uid][c]) for c in tracked) < sum(int(second[uid][c]) for c in tracked) == 1440
    # the part of 4/12 both months hold is the same lines
    for kind in ("hourlySteps", "minuteStepsNarrow", "minuteCaloriesNarrow"):
        one = {tuple(r.values()) for r in _rows(out, 1, kind) if r[BY_KIND[kind].header[1]].startswith(OVERLAP)}
        two = {tuple(r.values()) for r in _rows(out, 2, kind) if r[BY_KIND[kind].header[1]].startswith(OVERLAP)}
        assert one and one < two


def test_month_2_last_day_is_partial(clean):
    out, _ = clean
    last = [r for r in _rows(out, 2, "hourlySteps") if r["ActivityHour"].startswith("4/16/2016 ")]
    assert max(_ts(r["ActivityHour"]).hour for r in last) == synthetic.LAST_DAY_CUTOFF_HOUR - 1
    wide = {r["ActivityHour"] for r in _rows(out, 2, "minuteStepsWide")}
    assert min(map(_ts, wide)).date() == date(2016, 4, 13)


# ---------------------------------------------------------------------------------------------------
# internal consistency


@pytest.mark.parametrize("month", [1, 2])
def test_minutes_sum_to_hours_and_hours_to_days(clean, month):
    out, _ = clean
    minute_steps, minute_intensity, minute_count = Counter(), Counter(), Counter()
    codes = defaultdict(Counter)
    steps_rows = _rows(out, month, "minuteStepsNarrow")
    intensity_rows = _rows(out, month, "minuteIntensitiesNarrow")
    assert [(r["Id"], r["ActivityMinute"]) for r in steps_rows] == \
        [(r["Id"], r["ActivityMinute"]) for r in intensity_rows]
    for s, i in zip(steps_rows, intensity_rows):
        moment = _ts(s["ActivityMinute"])
        hour = (s["Id"], moment.replace(minute=0))
        steps = int(s["Steps"])
        assert 0 <= steps <= 200
        minute_steps[hour] += steps
        minute_intensity[hour] += int(i["Intensity"])
        minute_count[hour] += 1
        codes[(s["Id"], moment.date())][int(i["Intensity"])] += 1

    hourly_steps = {(r["Id"], _ts(r["ActivityHour"])): int(r["StepTotal"]) for r in _rows(out, month, "hourlySteps")}
    assert hourly_steps == dict(minute_steps)
    assert set(minute_count.values()) == {60}
    for r in _rows(out, month, "hourlyIntensities"):
        total = int(r["TotalIntensity"])
        assert total == minute_intensity[(r["Id"], _ts(r["ActivityHour"]))]
        assert float(r["AverageIntensity"]) == pytest.approx(total / 60, abs=1e-6)

    daily_from_hours = Counter()
    for (uid, hour), steps in hourly_steps.items():
        daily_from_hours[(uid, hour.date())] += steps
    for r in _rows(out, month, "dailyActivity"):   # partial days are the sums of the part they hold, too
        key = (r["Id"], _day(r["ActivityDate"]))
        assert int(r["TotalSteps"]) == daily_from_hours[key]
        assert [int(r[c]) for c in ("SedentaryMinutes", "LightlyActiveMinutes", "FairlyActiveMinutes",
                                    "VeryActiveMinutes")] == [codes[key][c] for c in range(4)]


def test_daily_sub_files_repeat_daily_activity(clean):
    out, _ = clean
    activity = {(r["Id"], r["ActivityDate"]): r for r in _rows(out, 2, "dailyActivity")}
    for kind in ("dailyCalories", "dailySteps", "dailyIntensities"):
        rows = _rows(out, 2, kind)
        assert [(r["Id"], r["ActivityDay"]) for r in rows] == list(activity)
        for r in rows:
            source = activity[(r["Id"], r["ActivityDay"])]
            for column, value in r.items():
                if column == "ActivityDay":
                    continue
                expected = source["TotalSteps"] if column == "StepTotal" else source[column]
                assert value == expected, (kind, column)


def test_wide_files_hold_the_narrow_values(clean):
    out, _ = clean
    for wide_kind, narrow_kind in (("minuteStepsWide", "minuteStepsNarrow"),
                                   ("minuteCaloriesWide", "minuteCaloriesNarrow"),
                                   ("minuteIntensitiesWide", "minuteIntensitiesNarrow")):
        value_column = BY_KIND[narrow_kind].header[2]
        narrow = {(r["Id"], r["ActivityMinute"]): r[value_column] for r in _rows(out, 2, narrow_kind)}
        wide = _rows(out, 2, wide_kind)
        assert wide
        prefix = BY_KIND[wide_kind].melt.prefix
        for r in wide:
            hour = _ts(r["ActivityHour"])
            for minute in range(60):
                stamp = hour.replace(minute=minute).strftime("%-m/%-d/%Y %-I:%M:%S %p")
                assert r[f"{prefix}{minute:02d}"] == narrow[(r["Id"], stamp)]


def test_sleep_day_is_derived_from_minute_sleep(clean):
    out, _ = clean
    logs = defaultdict(list)
    for r in _rows(out, 2, "minuteSleep"):
        logs[(r["Id"], r["logId"])].append((_ts(r["date"]), int(r["value"])))
    derived = defaultdict(lambda: [0, 0, 0])
    for (uid, _), minutes in logs.items():
        assert {v for _, v in minutes} <= {1, 2, 3}
        day = max(m for m, _ in minutes).date()
        derived[(uid, day)][0] += 1
        derived[(uid, day)][1] += sum(v == 1 for _, v in minutes)
        derived[(uid, day)][2] += len(minutes)
    rows = _rows(out, 2, "sleepDay")
    assert rows and all(r["SleepDay"].endswith(" 12:00:00 AM") for r in rows)
    got = {(r["Id"], _ts(r["SleepDay"]).date()): [int(r["TotalSleepRecords"]), int(r["TotalMinutesAsleep"]),
                                                  int(r["TotalTimeInBed"])] for r in rows}
    assert got == dict(derived)
    sleepers = {r["Id"] for r in rows}
    users = {r["Id"] for r in _rows(out, 2, "dailyActivity")}
    assert sleepers < users                        # some users have no sleep at all
    assert any(r["date"].endswith(":30 AM") or r["date"].endswith(":30 PM") for r in _rows(out, 2, "minuteSleep"))


def test_realistic_days_goal_days_and_non_wear_days(clean):
    out, _ = clean
    days = _rows(out, 2, "dailyActivity")
    assert any(int(r["TotalSteps"]) >= 10_000 for r in days)
    assert any(r["TotalSteps"] == "0" and r["SedentaryMinutes"] == "1440" for r in days)
    worn = [int(r["TotalSteps"]) for r in days if r["TotalSteps"] != "0"]
    assert 1_000 <= min(worn) and max(worn) <= 25_000
    for r in days:
        assert float(r["TotalDistance"]) == float(r["TrackerDistance"])


def test_heart_rate_for_some_users_in_range(clean):
    out, _ = clean
    rows = _rows(out, 2, "heartrate_seconds")
    assert len({r["Id"] for r in rows}) == 3
    assert all(50 <= int(r["Value"]) <= 180 for r in rows)
    per_day = Counter((r["Id"], _ts(r["Time"]).date()) for r in rows)
    assert max(per_day.values()) <= 3000
    by_user = defaultdict(list)
    for r in rows:
        by_user[r["Id"]].append(_ts(r["Time"]))
    gaps = [(b - a).total_seconds() for times in by_user.values() for a, b in zip(times, times[1:])
            if a.date() == b.date() and (b - a).total_seconds() < 60]
    assert gaps and min(gaps) >= 1 and max(gaps) <= 15


def test_weight_log_quirks(clean):
    out, _ = clean
    rows = _rows(out, 1, "weightLogInfo") + _rows(out, 2, "weightLogInfo")
    assert rows and {r["IsManualReport"] for r in rows} == {"True", "False"}
    for r in rows:
        moment = _ts(r["Date"])
        if r["IsManualReport"] == "True":
            assert r["Date"].endswith(" 11:59:59 PM")
        assert int(r["LogId"]) == calendar.timegm(moment.timetuple()) * 1000
        assert float(r["WeightPounds"]) == pytest.approx(float(r["WeightKg"]) * 2.20462, rel=1e-5)
    assert sum(r["Fat"] == "" for r in rows) > len(rows) / 2


def test_clean_rows_break_no_rule(clean):
    _, paths = clean
    for path in paths:
        kind = kind_of_file(path)
        header, rows = _read(path)
        for fields in rows:
            assert not broken_rules(kind, header, fields), (path.name, fields)


# ---------------------------------------------------------------------------------------------------
# dirty rows


def test_dirty_sidecar_lists_one_row_per_rule(dirty):
    out, _ = dirty
    entries = json.loads((out / synthetic.DIRTY_SIDECAR).read_text())
    assert sorted(e["rule"] for e in entries) == sorted(synthetic.DIRTY_RULES)
    for entry in entries:
        path = out / entry["file"]
        assert path.parent.name == M2
        lines = path.read_bytes().decode().split("\r\n")
        assert lines[entry["row"]] == entry["line"]   # the header is line 0, data rows are 1-based
        assert entry["row"] >= 1


def test_each_dirty_row_breaks_only_its_rule_on_an_unused_key(dirty):
    out, _ = dirty
    dirty_lines = _dirty_lines(out)
    for entry in synthetic.read_dirty_rows(out):
        kind = BY_KIND[entry["kind"]]
        header, _ = _read(out / entry["file"])
        fields = entry["line"].split(",")
        assert broken_rules(kind, header, fields) == {entry["rule"], *entry.get("implies", [])}, entry
        if entry["rule"] != "field_count":
            clean_keys = {_key(kind, r) for r in _rows(out, 2, entry["kind"], dirty_lines)}
            assert _key(kind, dict(zip(header, fields))) not in clean_keys, entry


def test_a_clean_run_writes_no_sidecar_and_removes_a_stale_one(tmp_path):
    synthetic.generate(tmp_path, users=2, days=4, dirty_rows=True)
    assert (tmp_path / synthetic.DIRTY_SIDECAR).exists()
    synthetic.generate(tmp_path, users=2, days=4)
    assert not (tmp_path / synthetic.DIRTY_SIDECAR).exists()
    assert synthetic.read_dirty_rows(tmp_path) == []


@pytest.mark.parametrize("days", [1, 2, 3, 62])
def test_small_and_full_day_counts(tmp_path, days):
    paths = synthetic.generate(tmp_path, users=2, days=days, heart_rate_users=1, dirty_rows=True)
    assert len(paths) == sum(len(k.months) for k in KINDS)
    month2 = {r["ActivityDate"] for r in _rows(tmp_path, 2, "dailyActivity", _dirty_lines(tmp_path))}
    assert len(month2) == days - min(days // 2, 31)
    if days >= 4:
        assert "3/13/2016 2:00:00 AM" in {r["ActivityHour"] for r in _rows(tmp_path, 1, "hourlySteps")}
