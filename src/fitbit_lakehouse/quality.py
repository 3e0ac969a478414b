"""Validation rules as Spark expressions, and the reconciliation of counts.

A rule is named in conf/ (validation.rules) with its parameters; the catalogue says which rules a
column or kind is subject to. Each failed rule adds its name (":<column>" where it is about one
column) to the record's `reasons`; a record with any reason goes to silver/quarantine.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column as SparkColumn
from pyspark.sql import functions as F

from .catalogue import DATE_FORMAT, TIMESTAMP_FORMAT, Column, FileKind
from .config import Settings

STRUCTURAL_RULES = ("unparseable_event", "unknown_event_type", "field_count", "missing_column",
                    "id_not_positive_integer", "timestamp_unparseable")


@dataclass(frozen=True)
class Rules:
    """The enabled rules and their parameters, from conf/ validation.rules."""
    params: dict

    @classmethod
    def from_settings(cls, settings: Settings) -> "Rules":
        rules = settings.get("validation.rules") or {}
        return cls({name: (p or {}) for name, p in rules.items() if (p or {}).get("enabled", True)})

    def on(self, name: str) -> bool:
        # structural rules cannot be switched off: a record that fails them has no typed form
        return name in self.params or name in STRUCTURAL_RULES

    def param(self, name: str, key: str):
        return self.params[name][key]


Reason = tuple  # (condition under which the rule fails, the reason's name)


def _reason(rules: Rules, rule: str, failed: SparkColumn, column: str | None = None) -> Reason | None:
    if not rules.on(rule):
        return None
    return failed, f"{rule}:{column}" if column else rule


DECIMAL_NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
WHOLE_AS_DECIMAL = r"^[+-]?[0-9]+[.]0+$"


def typed_value(raw: SparkColumn, col: Column, ntz_session: bool = False) -> SparkColumn:
    """The source string typed as the silver column (null when it does not parse). ntz_session: the
    session's default timestamp type is TIMESTAMP_NTZ, so one parse yields the wall-clock value."""
    text = F.trim(raw)
    if col.type == "id":
        value = text.try_cast("bigint")
    elif col.type == "long":   # a whole number, also as a float column writes it (pandas: 1234.0)
        value = F.coalesce(text.try_cast("bigint"),
                           F.when(text.rlike(WHOLE_AS_DECIMAL), F.substring_index(text, ".", 1).try_cast("bigint")))
    elif col.type == "double":   # Spark's cast also takes Java's 1.5d and 2f, which no CSV means as numbers
        value = F.when(text.rlike(DECIMAL_NUMBER), text.try_cast("double"))
        value = F.when(F.isnan(value) | (F.abs(value) == F.lit(float("inf"))), None).otherwise(value)
    elif col.type == "bool":
        lowered = F.lower(text)
        value = F.when(lowered == "true", True).when(lowered == "false", False)
    elif col.type == "date":
        value = F.try_to_date(text, DATE_FORMAT)
    elif col.type == "timestamp":
        # NTZ: the wall-clock string as read, never shifted by a zone (a DST-gap hour stays), whatever
        # the session's timestampType; try_ guards to_timestamp_ntz, which fails on bad input under ANSI
        fmt = F.lit(TIMESTAMP_FORMAT)
        value = F.try_to_timestamp(text, fmt) if ntz_session else \
            F.when(F.try_to_timestamp(text, fmt).isNotNull(), F.to_timestamp_ntz(text, fmt))
    else:
        raise ValueError(f"unknown column type {col.type}")
    if col.divisor != 1:   # a division, not x 0.1: 157 / 10 is 15.7, 157 x 0.1 is 15.700000000000001
        value = value / F.lit(col.divisor)
    return value


def column_reasons(raw: SparkColumn, value: SparkColumn, col: Column, rules: Rules) -> list[Reason]:
    """Reasons about one column: type/format, sign, and the column's own checks."""
    missing = raw.isNull() | (F.trim(raw) == "")
    bad_parse = value.isNull() & (~missing if col.nullable else F.lit(True))
    reasons: list[Reason | None] = []
    if col.type == "id":
        reasons.append(_reason(rules, "id_not_positive_integer", value.isNull() | (value <= 0)))
    elif col.type in ("date", "timestamp"):
        reasons.append(_reason(rules, "timestamp_unparseable", value.isNull(), col.name))
        if rules.on("date_out_of_range"):   # parses, but no tracker wrote it (and pandas stops at 2262)
            year = F.year(value)
            reasons.append(_reason(rules, "date_out_of_range", (year < rules.param("date_out_of_range", "min_year"))
                                   | (year > rules.param("date_out_of_range", "max_year")), col.name))
    elif col.type == "bool":
        reasons.append(_reason(rules, "not_a_boolean", bad_parse, col.name))
    else:
        reasons.append(_reason(rules, "not_a_number", bad_parse, col.name))
        reasons.append(_reason(rules, "negative_value", value < 0, col.name))
    for check in col.checks:
        reasons.append(_check(check, value, col, rules))
    return [r for r in reasons if r is not None]


def _range(rules: Rules, rule: str, value: SparkColumn, col: Column) -> Reason | None:
    if not rules.on(rule):
        return None
    low, high = rules.param(rule, "min"), rules.param(rule, "max")
    return _reason(rules, rule, (value < low) | (value > high), col.name)


def _check(check: str, value: SparkColumn, col: Column, rules: Rules) -> Reason | None:
    if not rules.on(check):
        return None
    if check in ("daily_minutes_above_max", "steps_per_minute_above_max"):
        return _reason(rules, check, value > F.lit(rules.param(check, "max")), col.name)
    if check in ("heart_rate_out_of_range", "minute_intensity_out_of_range", "minute_sleep_out_of_range"):
        return _range(rules, check, value, col)
    raise ValueError(f"unknown column check {check!r} on {col.name}")


def row_reasons(kind: FileKind, typed: dict[str, SparkColumn], rules: Rules) -> list[Reason]:
    """Cross-field rules of a kind, over its typed columns."""
    reasons: list[Reason | None] = []
    for check in kind.row_checks:
        if check == "daily_minutes_sum_above_max" and rules.on(check):
            # as doubles: a sum of hostile 64-bit values must not overflow (an error under ANSI mode)
            total = sum(F.coalesce(typed[c].cast("double"), F.lit(0.0)) for c in
                        ("very_active_minutes", "fairly_active_minutes", "lightly_active_minutes",
                         "sedentary_minutes"))
            reasons.append(_reason(rules, check, total > F.lit(rules.param(check, "max"))))
        elif check == "asleep_above_time_in_bed":
            reasons.append(_reason(rules, check, typed["total_minutes_asleep"] > typed["total_time_in_bed"]))
        elif check != "daily_minutes_sum_above_max":
            raise ValueError(f"unknown row check {check!r} on {kind.kind}")
    return [r for r in reasons if r is not None]


def collect_reasons(reasons: list[Reason]) -> SparkColumn:
    """array<string> of the failed rules (empty when the record is valid). The array is only built
    for a record that fails a rule: most records pass, and cost one test of each condition."""
    empty = F.array().cast("array<string>")
    if not reasons:
        return empty
    failed = reasons[0][0]
    for condition, _ in reasons[1:]:
        failed = failed | condition
    names = F.array_compact(F.array(*[F.when(condition, F.lit(name)) for condition, name in reasons]))
    return F.when(failed, names).otherwise(empty)


# --- reconciliation ----------------------------------------------------------------------

@dataclass(frozen=True)
class Reconciliation:
    """Per silver table: records in = silver rows + duplicates + quarantined."""
    table: str
    records_in: int
    silver_rows: int
    duplicates: int
    quarantined: int

    @property
    def holds(self) -> bool:
        return self.records_in == self.silver_rows + self.duplicates + self.quarantined

    def as_dict(self) -> dict:
        return {"table": self.table, "records_in": self.records_in, "silver_rows": self.silver_rows,
                "duplicates": self.duplicates, "quarantined": self.quarantined, "holds": self.holds}
