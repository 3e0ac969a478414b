"""A synthetic Fitbit data set in the exact Kaggle (Fitabase export) format.

Used when no real CSV is available. Every file kind of the catalogue is written, with the header of
`FileKind.header`, CRLF line endings, no quoting, no BOM and a trailing newline; rows are sorted by Id,
then time. The values come from one simulated minute-level timeline per user, so the files agree:

- minute Steps sum to the hourly StepTotal, hourly to the daily TotalSteps (also on partial days: a
  partial day's daily row is the sum of the minutes it holds); minute Intensity codes 0-3 sum to the
  hourly TotalIntensity (AverageIntensity = TotalIntensity / 60) and count, per code 3/2/1/0, to the
  daily VeryActive/FairlyActive/LightlyActive/Sedentary minutes; minute Calories are
  BMR-per-minute x METs / 10, hourly and daily Calories their rounded sums;
- dailyCalories/dailySteps/dailyIntensities repeat the dailyActivity values;
- the *Wide files hold the narrow minute values of the same hours;
- sleepDay is derived from minuteSleep (logs grouped by the day they end on);
- non-wear days have 0 steps, 1,440 sedentary minutes, METs 10 and BMR calories; while a user sleeps
  the minute activity is 0.

Dates (two Kaggle month folders that overlap on 4/12/2016):

- ``m1 = min(days // 2, 31)`` full days go to month 1, starting on 3/12/2016 (the first day of the
  Kaggle month 1), so the DST-gap day 3/13/2016 (with its ``3/13/2016 2:00:00 AM`` hour, which no US
  time zone has) is in month 1 whenever ``days >= 4``. With ``days < 62`` the month-1 days stop before
  4/11 and there is a gap up to 4/12.
- Month 1 then also holds a PARTIAL 4/12/2016: its hourly/minute data, sleep, heart rate and weight
  stop at a per-user hour between 9:00 and 16:00, and its dailyActivity row sums only that part, so
  it has fewer steps and fewer tracked minutes than month 2's row for the same user-day. The rows
  it shares with month 2 (hours, minutes, ...) are identical lines.
- Month 2 holds ``days - m1`` days from 4/12/2016 (the full 4/12). When it has at least two days,
  its last day is partial like Kaggle's 5/12: data stop at 16:00 (last hour 3:00 PM, last minute
  3:59 PM) and the daily row sums that part. The *Wide files start on the second month-2 day (as
  Kaggle's do, one day after the narrow files) and end with the narrow ones.

Ids are 10-digit (the first one below 2^31, the others above). The first user is an active one
(~11,500 steps a day, >= 10,500 on 4/12) so that step-goal alerts exist; every third user
(index 2, 5, ...) has no sleep data; half the sleepers have minuteSleep stamps at ``:30`` seconds;
the first ``heart_rate_users`` users have heart rate readings (every 5-15 s, a few windows of
40-100 minutes a wear day, at most 3,000 a day); users with index % 7 == 1 (1, 8, 15, ...) log
their weight with a scale (IsManualReport ``False``, a morning time), the others with index % 4 == 0
(0, 4, 12, ...) manually (``11:59:59 PM``, ``True``); Fat is empty in ~95% of the rows.
WeightPounds = WeightKg x 2.20462262185 (the factor of the real files, i.e. "x 2.20462").

``dirty_rows=True`` appends to the month-2 files one row per rule of `DIRTY_RULES` and writes
``out_dir/_dirty_rows.json``: one entry per dirty row with ``file`` (relative to out_dir, with ``/``),
``row`` (1-based data row, the header is row 0), ``rule``, ``kind`` and ``line``. Each dirty row uses
the last user's Id (or an invalid one) on days after the last clean day, so its natural key is not
used by any clean row. A dailyActivity minute field above 1,440 necessarily makes the four fields'
sum exceed 1,440 too: that row's entry lists it in ``implies``.

Same arguments, same bytes (numpy Generators seeded from ``seed``, the user and the component).
"""
from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from .catalogue import KINDS, FileKind

MONTH_DIRS = {1: "Fitabase Data 3.12.16-4.11.16", 2: "Fitabase Data 4.12.16-5.12.16"}
MONTH1_START = date(2016, 3, 12)
OVERLAP_DAY = date(2016, 4, 12)      # last (partial) day of month 1, first (full) day of month 2
DST_GAP_DAY = date(2016, 3, 13)      # 2:00-2:59 AM does not exist in US time zones
MONTH1_MAX_DAYS = 31                 # 3/12/2016 .. 4/11/2016
LAST_DAY_CUTOFF_HOUR = 16            # month 2's last day stops before 4:00 PM, like Kaggle's 5/12
DIRTY_SIDECAR = "_dirty_rows.json"
POUNDS_PER_KG = 2.20462262185
GOAL_STEPS = 10_000

DIRTY_RULES: dict[str, str] = {
    "field_count": "the row has one field fewer than the header (hourlySteps)",
    "id_not_positive_integer": "Id is not a positive integer: `abc` (hourlyCalories)",
    "timestamp_unparseable": "the time does not parse: `13/45/2016 1:00:00 AM` (hourlyIntensities)",
    "not_a_number": "a count is not a number: StepTotal `12x` (dailySteps)",
    "negative_value": "a count is negative: Steps `-3` (minuteStepsNarrow)",
    "daily_minutes_above_max": "one daily minute field above 1,440: SedentaryMinutes 1500 (dailyActivity)",
    "daily_minutes_sum_above_max": "four daily minute fields, each <= 1,440, summing to 1,600 (dailyActivity)",
    "asleep_above_time_in_bed": "TotalMinutesAsleep 500 > TotalTimeInBed 450 (sleepDay)",
    "heart_rate_out_of_range": "heart rate Value 300 bpm (heartrate_seconds)",
    "minute_intensity_out_of_range": "minute Intensity 5, codes are 0-3 (minuteIntensitiesNarrow)",
    "minute_sleep_out_of_range": "minute sleep value 7, codes are 1-3 (minuteSleep)",
    "steps_per_minute_above_max": "minute Steps 400 (minuteStepsNarrow)",
}

_HOUR_SHAPE = np.array([0, 0, 0, 0, 0, 0.2, 0.6, 1.2, 1.6, 1.2, 1.0, 1.1,
                        1.5, 1.3, 1.0, 1.0, 1.2, 1.6, 1.8, 1.4, 1.0, 0.7, 0.4, 0.1])
_MINUTE_SHAPE = np.repeat(_HOUR_SHAPE, 60)
_SLEEP_LOG_BASE = 11_300_000_000


# ---------------------------------------------------------------------------------------------------
# formatting


def _f32(value: float) -> str:
    """A float32 value written as a double with 15 significant digits, like Fitabase (1.87999999523163)."""
    return "%.15g" % float(np.float32(value))


def _date_str(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


def _tod(second_of_day: int) -> str:
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{hour % 12 or 12}:{minute:02d}:{second:02d} {'AM' if hour < 12 else 'PM'}"


_TOD: list[str] = []


def _tod_table() -> list[str]:
    if not _TOD:
        _TOD.extend(_tod(s) for s in range(86400))
    return _TOD


_AVERAGE_INTENSITY = [f"{round(t / 60, 6):.6f}".rstrip("0").rstrip(".") for t in range(181)]


# ---------------------------------------------------------------------------------------------------
# the plan: which days go where


@dataclass(frozen=True)
class _Month:
    number: int
    day_indices: tuple[int, ...]     # calendar day indices, in order
    user_cutoff_day: int | None      # month 1: the overlap day, cut at the user's own hour
    fixed_cutoff_day: int | None     # month 2: its last day, cut at LAST_DAY_CUTOFF_HOUR

    def cutoff(self, user: "_User", day_index: int) -> int:
        """Minutes of that day the month holds."""
        if day_index == self.user_cutoff_day:
            return user.month1_cutoff_hour * 60
        if day_index == self.fixed_cutoff_day:
            return LAST_DAY_CUTOFF_HOUR * 60
        return 1440

    def holds(self, user: "_User", abs_second: int) -> bool:
        """Whether the month holds that moment (seconds since MONTH1_START 00:00:00) of the user."""
        day_index, second = divmod(int(abs_second), 86400)
        return day_index in self.day_indices and second < self.cutoff(user, day_index) * 60

    def holds_all(self, user: "_User", abs_seconds: np.ndarray) -> np.ndarray:
        """holds() of many moments at once."""
        days, seconds = np.divmod(abs_seconds, 86400)
        limit = np.zeros(max(self.day_indices) + 2, dtype=np.int64)
        for day in self.day_indices:
            limit[day] = self.cutoff(user, day) * 60
        return seconds < limit[np.minimum(days, len(limit) - 1)]


@dataclass(frozen=True)
class _Plan:
    n_days: int                      # calendar days simulated, from MONTH1_START
    months: tuple[_Month, ...]
    overlap_index: int
    month2_last_index: int

    def day(self, index: int) -> date:
        return MONTH1_START + timedelta(days=index)


def _plan(days: int) -> _Plan:
    m1 = min(days // 2, MONTH1_MAX_DAYS)
    m2 = days - m1
    overlap = (OVERLAP_DAY - MONTH1_START).days
    month1 = _Month(1, tuple(range(m1)) + (overlap,), overlap, None)
    month2_days = tuple(range(overlap, overlap + m2))
    month2 = _Month(2, month2_days, None, month2_days[-1] if m2 >= 2 else None)
    return _Plan(month2_days[-1] + 1, (month1, month2), overlap, month2_days[-1])


# ---------------------------------------------------------------------------------------------------
# users and their simulated timeline


@dataclass
class _User:
    index: int
    uid: int
    mean_steps: float
    stride_km: float
    bmr: float                       # calories per minute at 1 MET
    rest_hr: int
    has_sleep: bool
    sleep_second: int                # 0 or 30: seconds of the minuteSleep stamps
    heart_rate: bool
    weight_mode: str | None          # "manual" | "scale" | None
    p_nonwear: float
    p_very: float
    month1_cutoff_hour: int
    height_m: float
    weight_kg: float
    calories: np.ndarray = field(default_factory=lambda: np.zeros(0))   # per METs value
    calorie_str: list[str] = field(default_factory=list)


@dataclass
class _Timeline:
    steps: np.ndarray                # (days, 1440) int
    intensity: np.ndarray            # (days, 1440) 0-3
    mets: np.ndarray                 # (days, 1440) METs x 10
    sleep_logs: list[tuple[int, int, np.ndarray]]   # (logId, start abs minute, values 1-3)
    hr_seconds: np.ndarray           # abs seconds since MONTH1_START 00:00:00
    hr_values: np.ndarray
    weights: list[tuple[int, float, int | None, bool, float]]  # (abs second, kg, fat, manual, bmi)


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def _make_users(users: int, seed: int, heart_rate_users: int) -> list[_User]:
    rng = _rng(seed, 0)
    ids: list[int] = [int(rng.integers(1_000_000_000, 2**31))]
    while len(ids) < users:
        candidate = int(rng.integers(2**31 + 1, 10_000_000_000))
        if candidate not in ids:
            ids.append(candidate)
    ids.sort()
    result = []
    for index, uid in enumerate(ids):
        r = _rng(seed, 1, index)
        weight_mode = "scale" if index % 7 == 1 else "manual" if index % 4 == 0 else None
        user = _User(
            index=index, uid=uid,
            mean_steps=11_500.0 if index == 0 else float(r.uniform(3_000, 12_000)),
            stride_km=float(r.uniform(0.00062, 0.00080)),
            bmr=round(float(r.uniform(0.80, 1.45)), 4),
            rest_hr=int(r.integers(56, 76)),
            has_sleep=index % 3 != 2,
            sleep_second=30 if index % 2 == 1 else 0,
            heart_rate=index < heart_rate_users,
            weight_mode=weight_mode,
            p_nonwear=float(r.uniform(0.02, 0.12)),
            p_very=float(r.uniform(0.3, 0.9)),
            month1_cutoff_hour=int(r.integers(9, 17)),
            height_m=float(r.uniform(1.55, 1.90)),
            weight_kg=float(r.uniform(55, 110)),
        )
        mets = np.arange(256)
        user.calories = np.array([float(np.float32(round(user.bmr * m / 10, 4))) for m in mets])
        user.calorie_str = [_f32(round(user.bmr * m / 10, 4)) for m in mets]
        result.append(user)
    return result


def _sleep_logs(user: _User, plan: _Plan, seed: int, users: int) -> list[tuple[int, int, np.ndarray]]:
    if not user.has_sleep:
        return []
    rng = _rng(seed, 2, user.index)
    total = plan.n_days * 1440
    logs = []
    for day in range(plan.n_days):
        starts = []
        if rng.random() < 0.85:                       # the night sleep, ending this day
            starts.append((day * 1440 + int(rng.integers(-150, 61)), int(rng.integers(330, 561))))
        if rng.random() < 0.10:                       # an afternoon nap
            starts.append((day * 1440 + int(rng.integers(13 * 60, 16 * 60)), int(rng.integers(25, 101))))
        for start, duration in starts:
            values = np.ones(duration, dtype=np.int8)
            for code, count, longest in ((2, rng.poisson(duration / 45), 6), (3, rng.poisson(duration / 200), 4)):
                for _ in range(int(count)):
                    at = int(rng.integers(0, duration))
                    values[at:at + int(rng.integers(1, longest + 1))] = code
            if start >= 0 and start + duration <= total:
                logs.append((_SLEEP_LOG_BASE + start * users + user.index, start, values))
    return logs


def _wear_day(rng: np.random.Generator, user: _User, target: float):
    """Intensity codes, steps and METs of one worn day."""
    intensity = np.zeros(1440, dtype=np.int8)
    wake, bed = int(rng.integers(6 * 60, 8 * 60 + 31)), int(rng.integers(21 * 60 + 30, 23 * 60 + 31))
    very = int(min(target * rng.uniform(0.15, 0.45) / 150, 100)) if rng.random() < user.p_very else 0
    fairly = int(target * rng.uniform(0.02, 0.10) / 95)
    if very:
        at = int(rng.integers(wake, bed - very))
        intensity[at:at + very] = 3
    if fairly:
        at = int(rng.integers(wake, bed - fairly))
        segment = intensity[at:at + fairly]
        segment[segment == 0] = 2
    light = int(np.clip((target - 150 * very - 95 * fairly) / 30, 0, 600))
    free = np.arange(wake, bed)
    free = free[intensity[free] == 0]
    weights = _MINUTE_SHAPE[free] + 0.05
    chosen = rng.choice(free, size=min(light, len(free)), replace=False, p=weights / weights.sum())
    intensity[chosen] = 1

    steps = np.zeros(1440, dtype=np.int64)
    mets = np.full(1440, 10, dtype=np.int64)
    for code, (low, high), (m_low, m_high) in ((1, (0, 61), (15, 36)), (2, (65, 121), (30, 61)),
                                               (3, (115, 181), (60, 126))):
        where = intensity == code
        n = int(where.sum())
        steps[where] = rng.integers(low, high, n)
        mets[where] = rng.integers(m_low, m_high, n)
    awake_still = np.zeros(1440, dtype=bool)
    awake_still[wake:bed] = True
    awake_still &= (intensity == 0) & (rng.random(1440) < 0.03)
    steps[awake_still] = rng.integers(1, 10, int(awake_still.sum()))
    mets[awake_still] = 12
    return intensity, steps, mets


def _add_steps(rng, intensity, steps, mets, sleeping, lo: int, hi: int, needed: int) -> None:
    """Turn still, awake minutes in [lo, hi) into walking ones until `needed` more steps exist."""
    candidates = np.flatnonzero((intensity[lo:hi] == 0) & ~sleeping[lo:hi]) + lo
    rng.shuffle(candidates)
    for minute in candidates:
        if needed <= 0:
            break
        intensity[minute], steps[minute], mets[minute] = 3, 150, 80
        needed -= 150


def _simulate(user: _User, plan: _Plan, seed: int, users: int) -> _Timeline:
    n = plan.n_days
    rng = _rng(seed, 3, user.index)
    intensity = np.zeros((n, 1440), dtype=np.int8)
    steps = np.zeros((n, 1440), dtype=np.int64)
    mets = np.full((n, 1440), 10, dtype=np.int64)

    logs = _sleep_logs(user, plan, seed, users)
    sleeping = np.zeros(n * 1440, dtype=bool)
    for _, start, values in logs:
        sleeping[start:start + len(values)] = True
    sleeping = sleeping.reshape(n, 1440)

    forced_wear = {plan.overlap_index, plan.month2_last_index}
    wear = rng.random(n) >= user.p_nonwear
    wear[list(forced_wear)] = True
    second_month2_day = plan.overlap_index + 1
    if user.index == users - 1 and users > 1 and second_month2_day < plan.month2_last_index:
        wear[second_month2_day] = False           # at least one non-wear day in month 2
    for day in range(n):
        if not wear[day]:
            continue
        target = float(np.clip(user.mean_steps * rng.lognormal(0, 0.3), 1_500, 18_000))
        intensity[day], steps[day], mets[day] = _wear_day(rng, user, target)
    intensity[sleeping] = 0
    steps[sleeping] = 0
    mets[sleeping] = 10

    # month 1's partial 4/12 must hold fewer steps than the full day: some steps after its cutoff
    o = plan.overlap_index
    if steps[o, user.month1_cutoff_hour * 60:].sum() == 0:
        _add_steps(rng, intensity[o], steps[o], mets[o], sleeping[o], user.month1_cutoff_hour * 60, 1440, 1)
    if user.index == 0 and steps[o].sum() < GOAL_STEPS + 500:   # a step-goal day for sure
        _add_steps(rng, intensity[o], steps[o], mets[o], sleeping[o], 0, 1440,
                   GOAL_STEPS + 500 - int(steps[o].sum()))

    hr_seconds, hr_values = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if user.heart_rate:
        hr_seconds, hr_values = _heart_rate(user, intensity, wear, seed)
    weights = _weights(user, n, seed)
    return _Timeline(steps, intensity, mets, logs, hr_seconds, hr_values, weights)


def _heart_rate(user: _User, intensity: np.ndarray, wear: np.ndarray, seed: int):
    rng = _rng(seed, 4, user.index)
    all_seconds, all_values = [], []
    effect = np.array([0, 18, 38, 62])
    for day in np.flatnonzero(wear):
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            length = int(rng.integers(40, 101)) * 60
            start = int(rng.integers(7 * 3600, 21 * 3600)) + int(day) * 86400
            gaps = rng.integers(5, 16, length // 5 + 1)
            times = start + np.cumsum(gaps)
            parts.append(times[times < start + length])
        seconds = np.unique(np.concatenate(parts))[:3000]
        minute_codes = intensity.reshape(-1)[seconds // 60]
        noise = np.convolve(rng.normal(0, 4, len(seconds)), np.ones(6) / 6, mode="same") * 2
        values = np.clip(np.rint(user.rest_hr + effect[minute_codes] + noise), 50, 180).astype(np.int64)
        all_seconds.append(seconds)
        all_values.append(values)
    if not all_seconds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_seconds), np.concatenate(all_values)


def _weights(user: _User, n_days: int, seed: int):
    if user.weight_mode is None:
        return []
    rng = _rng(seed, 5, user.index)
    kg = user.weight_kg
    result = []
    for day in range(n_days):
        if rng.random() >= (0.35 if user.weight_mode == "manual" else 0.3):
            continue
        kg += float(rng.normal(0, 0.25))
        kg1 = round(kg, 1)
        second = 86399 if user.weight_mode == "manual" else int(rng.integers(6 * 3600, 10 * 3600))
        fat = int(rng.integers(15, 31)) if rng.random() < 0.05 else None
        bmi = round(kg1 / user.height_m ** 2, 2)
        result.append((day * 86400 + second, kg1, fat, user.weight_mode == "manual", bmi))
    return result


# ---------------------------------------------------------------------------------------------------
# writing


class _Out:
    """One CSV being written: bytes in, data rows counted (the header is row 0)."""

    def __init__(self, path: Path, kind: FileKind):
        self.path, self.kind, self.rows = path, kind, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "wb")
        self.handle.write((",".join(kind.header) + "\r\n").encode("ascii"))

    def write(self, text: str, rows: int) -> None:
        if rows:
            self.handle.write(text.encode("ascii"))
            self.rows += rows

    def close(self) -> None:
        self.handle.close()


class _Writer:
    def __init__(self, plan: _Plan):
        self.plan = plan
        self.tod = _tod_table()
        self.dates = [_date_str(plan.day(i)) for i in range(plan.n_days + 3)]
        self._minute_ts: dict[int, list[str]] = {}

    def minute_ts(self, day: int) -> list[str]:
        if day not in self._minute_ts:
            prefix = self.dates[day] + " "
            self._minute_ts[day] = [prefix + self.tod[m * 60] for m in range(1440)]
        return self._minute_ts[day]

    def ts(self, abs_second: int) -> str:
        day, second = divmod(int(abs_second), 86400)
        return f"{self.dates[day]} {self.tod[second]}"

    def write_user(self, outs: dict[str, _Out], month: _Month, user: _User, t: _Timeline) -> None:
        uid = user.uid
        daily, hourly = [], {"hourlySteps": [], "hourlyCalories": [], "hourlyIntensities": []}
        narrow = {"minuteStepsNarrow": [], "minuteCaloriesNarrow": [], "minuteIntensitiesNarrow": [],
                  "minuteMETsNarrow": []}
        wide = {"minuteStepsWide": [], "minuteCaloriesWide": [], "minuteIntensitiesWide": []}
        wide_wanted = "minuteStepsWide" in outs
        first_wide_day = month.day_indices[1] if len(month.day_indices) > 1 else month.day_indices[0]
        n_hours = n_minutes = 0
        for day in month.day_indices:
            cut = month.cutoff(user, day)
            steps = t.steps[day, :cut]
            inten = t.intensity[day, :cut]
            mets = t.mets[day, :cut]
            calories = user.calories[mets]
            daily.append(self._daily(user, day, steps, inten, calories))

            hours = cut // 60
            h_steps = steps.reshape(hours, 60).sum(axis=1).tolist()
            h_cal = np.rint(calories.reshape(hours, 60).sum(axis=1)).astype(np.int64).tolist()
            h_int = inten.reshape(hours, 60).sum(axis=1, dtype=np.int64).tolist()
            mts = self.minute_ts(day)
            hts = mts[::60]
            pre = f"{uid},"
            hourly["hourlySteps"].extend(f"{pre}{s},{v}\r\n" for s, v in zip(hts, h_steps))
            hourly["hourlyCalories"].extend(f"{pre}{s},{v}\r\n" for s, v in zip(hts, h_cal))
            hourly["hourlyIntensities"].extend(f"{pre}{s},{v},{_AVERAGE_INTENSITY[v]}\r\n"
                                               for s, v in zip(hts, h_int))
            n_hours += hours

            steps_l, inten_l, mets_l = steps.tolist(), inten.tolist(), mets.tolist()
            cal_l = [user.calorie_str[m] for m in mets_l]
            narrow["minuteStepsNarrow"].append("".join([f"{pre}{s},{v}\r\n" for s, v in zip(mts, steps_l)]))
            narrow["minuteCaloriesNarrow"].append("".join([f"{pre}{s},{v}\r\n" for s, v in zip(mts, cal_l)]))
            narrow["minuteIntensitiesNarrow"].append(
                "".join([f"{pre}{s},{v}\r\n" for s, v in zip(mts, inten_l)]))
            narrow["minuteMETsNarrow"].append("".join([f"{pre}{s},{v}\r\n" for s, v in zip(mts, mets_l)]))
            n_minutes += cut

            if wide_wanted and day >= first_wide_day:
                for h in range(hours):
                    head = f"{pre}{hts[h]},"
                    sl = slice(h * 60, h * 60 + 60)
                    wide["minuteStepsWide"].append(head + ",".join(map(str, steps_l[sl])) + "\r\n")
                    wide["minuteCaloriesWide"].append(head + ",".join(cal_l[sl]) + "\r\n")
                    wide["minuteIntensitiesWide"].append(head + ",".join(map(str, inten_l[sl])) + "\r\n")

        outs["dailyActivity"].write("".join(r["activity"] for r in daily), len(daily))
        if "dailyCalories" in outs:
            outs["dailyCalories"].write("".join(r["calories"] for r in daily), len(daily))
            outs["dailySteps"].write("".join(r["steps"] for r in daily), len(daily))
            outs["dailyIntensities"].write("".join(r["intensities"] for r in daily), len(daily))
        for kind, lines in hourly.items():
            outs[kind].write("".join(lines), n_hours)
        for kind, chunks in narrow.items():
            outs[kind].write("".join(chunks), n_minutes)
        if wide_wanted:
            for kind, lines in wide.items():
                outs[kind].write("".join(lines), len(lines))

        self._write_sleep(outs, month, user, t)
        keep = month.holds_all(user, t.hr_seconds)
        hr_lines = [f"{uid},{self.ts(s)},{v}\r\n"
                    for s, v in zip(t.hr_seconds[keep].tolist(), t.hr_values[keep].tolist())]
        outs["heartrate_seconds"].write("".join(hr_lines), len(hr_lines))
        w_lines = []
        for second, kg, fat, manual, bmi in t.weights:
            if month.holds(user, second):
                kg32 = float(np.float32(kg))
                w_lines.append(f"{uid},{self.ts(second)},{_f32(kg)},{'%.15g' % (kg32 * POUNDS_PER_KG)},"
                               f"{'' if fat is None else fat},{_f32(bmi)},{manual},"
                               f"{self._epoch_ms(second)}\r\n")
        outs["weightLogInfo"].write("".join(w_lines), len(w_lines))

    def _epoch_ms(self, abs_second: int) -> int:
        moment = datetime.combine(MONTH1_START, datetime.min.time()) + timedelta(seconds=abs_second)
        return calendar.timegm(moment.timetuple()) * 1000

    def _daily(self, user: _User, day: int, steps, inten, calories) -> dict[str, str]:
        by_code = [int(steps[inten == c].sum()) for c in range(4)]
        minutes = [int((inten == c).sum()) for c in range(4)]
        stride = user.stride_km
        dist = [round(by_code[0] * stride, 2), round(by_code[1] * stride, 2),
                round(by_code[2] * stride * 1.05, 2), round(by_code[3] * stride * 1.15, 2)]
        total = round(sum(dist), 2)
        sed_d, light_d, mod_d, very_d = (_f32(d) for d in dist)
        total_steps = int(steps.sum())
        cal = int(round(float(calories.sum())))
        ds = self.dates[day]
        pre = f"{user.uid},{ds},"
        return {
            "activity": (f"{pre}{total_steps},{_f32(total)},{_f32(total)},0,{very_d},{mod_d},{light_d},{sed_d},"
                         f"{minutes[3]},{minutes[2]},{minutes[1]},{minutes[0]},{cal}\r\n"),
            "calories": f"{pre}{cal}\r\n",
            "steps": f"{pre}{total_steps}\r\n",
            "intensities": (f"{pre}{minutes[0]},{minutes[1]},{minutes[2]},{minutes[3]},"
                            f"{sed_d},{light_d},{mod_d},{very_d}\r\n"),
        }

    def _write_sleep(self, outs: dict[str, _Out], month: _Month, user: _User, t: _Timeline) -> None:
        lines, per_day = [], {}
        for log_id, start, values in t.sleep_logs:
            last = start + len(values) - 1
            if not month.holds(user, last * 60 + user.sleep_second):
                continue
            second = user.sleep_second
            lines.extend(f"{user.uid},{self.ts((start + i) * 60 + second)},{v},{log_id}\r\n"
                         for i, v in enumerate(values.tolist()))
            records, asleep, in_bed = per_day.get(last // 1440, (0, 0, 0))
            per_day[last // 1440] = (records + 1, asleep + int((values == 1).sum()), in_bed + len(values))
        outs["minuteSleep"].write("".join(lines), len(lines))
        if "sleepDay" in outs:
            rows = [f"{user.uid},{self.dates[d]} 12:00:00 AM,{r},{a},{b}\r\n"
                    for d, (r, a, b) in sorted(per_day.items())]
            outs["sleepDay"].write("".join(rows), len(rows))


def _dirty_rows(plan: _Plan, writer: _Writer, user: _User) -> list[tuple[str, str, str]]:
    """(kind, rule, line) for every rule, on days after the last clean one."""
    uid, day1, day2 = user.uid, plan.month2_last_index + 1, plan.month2_last_index + 2
    d1, d2 = writer.dates[day1], writer.dates[day2]
    return [
        ("hourlySteps", "field_count", f"{uid},{d1} 1:00:00 AM"),
        ("hourlyCalories", "id_not_positive_integer", f"abc,{d1} 1:00:00 AM,80"),
        ("hourlyIntensities", "timestamp_unparseable", f"{uid},13/45/2016 1:00:00 AM,0,0"),
        ("dailySteps", "not_a_number", f"{uid},{d1},12x"),
        ("minuteStepsNarrow", "negative_value", f"{uid},{d1} 1:00:00 AM,-3"),
        ("minuteStepsNarrow", "steps_per_minute_above_max", f"{uid},{d1} 1:01:00 AM,400"),
        ("dailyActivity", "daily_minutes_above_max", f"{uid},{d1},0,0,0,0,0,0,0,0,0,0,0,1500,1800"),
        ("dailyActivity", "daily_minutes_sum_above_max",
         f"{uid},{d2},5000,3.5,3.5,0,1,0.5,2,0,400,400,400,400,2100"),
        ("sleepDay", "asleep_above_time_in_bed", f"{uid},{d1} 12:00:00 AM,1,500,450"),
        ("heartrate_seconds", "heart_rate_out_of_range", f"{uid},{d1} 1:00:00 AM,300"),
        ("minuteIntensitiesNarrow", "minute_intensity_out_of_range", f"{uid},{d1} 1:00:00 AM,5"),
        ("minuteSleep", "minute_sleep_out_of_range", f"{uid},{d1} 1:00:00 AM,7,{_SLEEP_LOG_BASE - 1}"),
    ]


def generate(out_dir: Path, users: int = 6, days: int = 10, seed: int = 7, heart_rate_users: int = 3,
             dirty_rows: bool = False, layout: str = "months") -> list[Path]:
    """Write every catalogue file kind (both Kaggle months, or month 2 only for layout="flat").

    layout="months": month 1 in out_dir/"Fitabase Data 3.12.16-4.11.16"/ (the kinds shipped in month 1)
    and month 2 in out_dir/"Fitabase Data 4.12.16-5.12.16"/ (the kinds of month 2); layout="flat":
    month 2 only, directly in out_dir. See the module docstring for the dates and the dirty rows.
    Returns the CSV paths written, month 1 first, in catalogue order.
    """
    if users < 1 or days < 1 or heart_rate_users < 0:
        raise ValueError("users and days must be >= 1 and heart_rate_users >= 0")
    if layout not in ("months", "flat"):
        raise ValueError(f"layout must be 'months' or 'flat', not {layout!r}")
    out_dir = Path(out_dir)
    plan = _plan(days)
    writer = _Writer(plan)
    months = plan.months if layout == "months" else plan.months[1:]
    outs: dict[int, dict[str, _Out]] = {}
    for month in months:
        folder = out_dir / MONTH_DIRS[month.number] if layout == "months" else out_dir
        outs[month.number] = {k.kind: _Out(folder / k.file_name, k) for k in KINDS if month.number in k.months}
    people = _make_users(users, seed, heart_rate_users)
    try:
        for user in people:
            timeline = _simulate(user, plan, seed, users)
            for month in months:
                writer.write_user(outs[month.number], month, user, timeline)
        dirty = []
        if dirty_rows:
            month2 = outs[2]
            for kind, rule, line in _dirty_rows(plan, writer, people[-1]):
                out = month2[kind]
                out.write(line + "\r\n", 1)
                entry = {"file": out.path.relative_to(out_dir).as_posix(), "row": out.rows, "rule": rule,
                         "kind": kind, "line": line}
                if rule == "daily_minutes_above_max":
                    entry["implies"] = ["daily_minutes_sum_above_max"]
                dirty.append(entry)
    finally:
        for files in outs.values():
            for out in files.values():
                out.close()
    sidecar = out_dir / DIRTY_SIDECAR
    if dirty_rows:
        sidecar.write_text(json.dumps(dirty, indent=2) + "\n", encoding="utf-8")
    elif sidecar.exists():
        sidecar.unlink()              # a stale list from an earlier dirty run would be wrong now
    return [out.path for number in sorted(outs) for out in outs[number].values()]


def read_dirty_rows(out_dir: Path) -> list[dict]:
    """The dirty-row list written by generate(dirty_rows=True), or [] when there is none."""
    sidecar = Path(out_dir) / DIRTY_SIDECAR
    return json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else []


__all__ = ["generate", "read_dirty_rows", "DIRTY_RULES", "DIRTY_SIDECAR", "MONTH_DIRS"]
