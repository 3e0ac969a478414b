"""Settings: conf/base.yml + conf/<env>.yml + environment variables, into one object.

The object is passed explicitly to every layer; nothing reads the environment later.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import yaml

# Environment variable -> dotted settings key (the outward contract, see README).
ENV_OVERRIDES = {
    "FITBIT_RAW_DIR": "paths.raw_dir",
    "FITBIT_LAKE_DIR": "paths.lake_dir",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "MLFLOW_TRACKING_URI": "mlflow.tracking_uri",
    "SPARK_MASTER": "spark.master",
    "SPARK_KEPT_JVM": "spark.kept_jvm.attach",
}


def masked(text: Any) -> str:
    """A URI (or any text holding one) fit to print: the password of user:password@host becomes ***."""
    import re

    return re.sub(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", r"\g<scheme>\g<user>:***@",
                  str(text))


def find_conf_dir(start: Path | None = None) -> Path:
    """conf/ of the project: $FITBIT_CONF_DIR, else the nearest conf/base.yml above start."""
    if os.environ.get("FITBIT_CONF_DIR"):
        return Path(os.environ["FITBIT_CONF_DIR"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "conf" / "base.yml").is_file():
            return folder / "conf"
    package_root = Path(__file__).resolve().parents[2]
    if (package_root / "conf" / "base.yml").is_file():
        return package_root / "conf"
    raise FileNotFoundError("conf/base.yml not found: run from the project or set FITBIT_CONF_DIR")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    merged = copy.deepcopy(dict(base))
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for depth in range(1, len(parts)):   # below an open map the rest is one key: spark.conf.spark.sql.x
        if _is_open(".".join(parts[:depth])):
            parts = [*parts[:depth], ".".join(parts[depth:])]
            break
    *parents, leaf = parts
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping):
        node[leaf] = deep_merge(node[leaf], value)   # {"kpi.activity": {"steps_goal": 8000}} keeps the weights
    else:
        node[leaf] = value


# Maps whose keys are the user's own (Spark's and Delta's settings, topic configs, a stream's bounds):
# any key is taken below them. Everywhere else a key conf/ does not have is a typo, except these.
OPEN_MAPS = ("spark.conf", "kafka.topic_config", "stream.settings", "stream.delta_conf")
ALSO_TAKEN = {"validation.rules.*.enabled": bool}   # a rule switched off (quality.Rules)


def _value(tree: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _dotted_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, f"{dotted}."))
    return keys


def _is_open(dotted: str) -> bool:
    return any(fnmatchcase(dotted, pattern) for pattern in OPEN_MAPS)


def _flat(dotted: str, value: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) of each setting a value gives: its mappings' keys joined on, with dots (a key
    "activity.steps_goal" inside a mapping is the same setting as a nested one), down to open maps."""
    if isinstance(value, Mapping) and value and not _is_open(dotted):
        return [pair for k, v in value.items() for pair in _flat(f"{dotted}.{k}", v)]
    return [(dotted, value)]


def _apply(tree: dict, settings: Mapping[str, Any]) -> None:
    """Settings (dotted or nested keys) set into tree, each over the one it names."""
    for key, value in settings.items():
        for dotted, leaf in _flat(str(key), value):
            _set_dotted(tree, dotted, leaf)


def unknown_settings(known: Mapping, dotted_values: Mapping[str, Any]) -> list[str]:
    """The keys of dotted_values (dotted, or nested in their mapping values) that name no setting of
    `known`, each cut after its first unknown part."""
    unknown = []
    for dotted, _ in (pair for k, v in dotted_values.items() for pair in _flat(str(k), v)):
        node: Any = known
        path: list[str] = []
        parts = dotted.split(".")
        for part in parts:
            if path and _is_open(".".join(path)):
                break
            path.append(part)
            if not isinstance(node, Mapping) or part not in node:
                if len(path) == len(parts) and isinstance(node, Mapping) and _also_taken(dotted):
                    break   # e.g. a rule's `enabled`, which conf/ leaves out
                if ".".join(path) not in unknown:
                    unknown.append(".".join(path))
                break
            node = node[part]
    return unknown


def _also_taken(dotted: str) -> type | None:
    return next((kind for pattern, kind in ALSO_TAKEN.items() if fnmatchcase(dotted, pattern)), None)


def mistyped_settings(known: Mapping, dotted_values: Mapping[str, Any]) -> list[str]:
    """`key (what it takes, not what was given)` for each value that is not of its setting's kind: a
    switch takes true or false (the text "false" would leave it on), a number a number (a goal of "8k"
    would fail deep in gold, after bronze and silver had run)."""
    wrong = []
    for dotted, value in (pair for k, v in dotted_values.items() for pair in _flat(str(k), v)):
        current = _value(known, dotted)
        kind = _also_taken(dotted) or (bool if isinstance(current, bool) else
                                      float if isinstance(current, (int, float)) else None)
        if isinstance(current, Mapping) and not isinstance(value, Mapping):
            wrong.append(f"{dotted} takes a mapping of settings (as in conf/base.yml), not {value!r}")
        elif isinstance(current, list) and not isinstance(value, list):
            wrong.append(f"{dotted} takes a list (as in conf/base.yml), not {value!r}")
        if kind is None or dotted in ENV_OVERRIDES.values():   # those come as text
            continue
        if value is None:
            wrong.append(f"{dotted} takes {'true or false' if kind is bool else 'a number'}, not null")
        if kind is bool and not isinstance(value, bool):
            wrong.append(f"{dotted} takes true or false, not {value!r}")
        elif kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            wrong.append(f"{dotted} takes a number, not {value!r}")
    return wrong


@dataclass(frozen=True)
class Bound:
    """What a number setting takes: from `low` (above it when `strictly`) up to `high`; whole or not."""
    low: float = 0
    strictly: bool = False
    high: float | None = None
    whole: bool = False

    def refuses(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"takes a finite number, not {value!r}"
        below = value <= self.low if self.strictly else value < self.low
        if not below and (self.high is None or value <= self.high) and (not self.whole or value == int(value)):
            return None
        lowest = f"above {self.low:g}" if self.strictly else f"from {self.low:g}"
        highest = f" to {self.high:g}" if self.high is not None else "" if self.strictly else " up"
        return f"takes {'a whole number' if self.whole else 'a number'} {lowest}{highest}, not {value!r}"


COUNT, ABOVE_ZERO, SHARE = Bound(low=1, whole=True), Bound(strictly=True), Bound(high=1)
# A number setting out of its range does not fail: it makes figures meaningless (a goal of 0 divides by
# zero, a weight of 1.2 scores above 100) or a step loop. First matching pattern; any other: from 0 up.
NUMBER_BOUNDS = {
    "kpi.activity.*_goal*": ABOVE_ZERO, "kpi.sleep.*_goal*": ABOVE_ZERO, "kpi.goal_alert_steps": ABOVE_ZERO,
    "kpi.*_weight": SHARE, "kpi.wellness.scale": ABOVE_ZERO, "kpi.wellness.decimals": Bound(high=10, whole=True),
    "insights.low_sleep_efficiency": SHARE, "insights.min_pairs_for_correlation": Bound(low=2, whole=True),
    "*_port": Bound(low=1, high=65535, whole=True), "*.port": Bound(low=1, high=65535, whole=True),
    "*.claim_timeout_s": Bound(), "*timeout_s": ABOVE_ZERO, "*.poll_s": ABOVE_ZERO, "*.refresh_seconds": ABOVE_ZERO,
    **dict.fromkeys(("kafka.partitions", "kafka.replication_factor", "producer.records_per_message",
                     "producer.batch_size_bytes", "producer.max_request_size", "bronze.max_*",
                     "silver.max_files_per_trigger", "silver.rows_per_file", "*.table_threads",
                     "spark.shuffle_partitions", "synthetic.users", "synthetic.days", "cluster.*.workers",
                     "cluster.*.worker_cores", "cluster.kafka.nodes", "mlflow.model.n_*",
                     "mlflow.model.min_users_per_cluster", "insights.chart_dpi"), COUNT),
}
WEIGHT_PAIRS = (("kpi.activity.steps_weight", "kpi.activity.mvpa_weight"),
                ("kpi.sleep.duration_weight", "kpi.sleep.efficiency_weight"),
                ("kpi.wellness.activity_weight", "kpi.wellness.sleep_weight"))
# ordered cut-offs (highest first; the last takes what is left, so it is 0): list, name field, number field
CUT_OFFS = (("kpi.segments", "name", "min_active_minutes"), ("insights.correlation_bands", "word", "min_abs_r"))


def out_of_range_settings(tree: Mapping) -> list[str]:
    """`key takes ..., not value` for each number setting outside what it can mean, and the weights,
    rule limits and cut-offs that do not fit together."""
    wrong = []
    for dotted in _dotted_keys(tree):
        value = _value(tree, dotted)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or _is_open(dotted.rpartition(".")[0]):
            continue
        bound = next((b for pattern, b in NUMBER_BOUNDS.items() if fnmatchcase(dotted, pattern)), Bound())
        problem = bound.refuses(value)
        if problem:
            wrong.append(f"{dotted} {problem}")
    get = partial(_value, tree)
    for first, second in WEIGHT_PAIRS:
        total = (get(first) or 0) + (get(second) or 0)
        if abs(total - 1) > 1e-9:
            wrong.append(f"{first} and {second} are a weighted mean: they add up to 1, not {total:g}")
    for rule, limits in (get("validation.rules") or {}).items():
        for low, high in (("min", "max"), ("min_year", "max_year")):
            pair = (limits.get(low), limits.get(high)) if isinstance(limits, Mapping) else (None, None)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) and pair[0] > pair[1]:
                wrong.append(f"validation.rules.{rule}: {low} {limits[low]} is above {high} {limits[high]}")
    for dotted, name, number in CUT_OFFS:
        entries = [entry if isinstance(entry, Mapping) else {} for entry in get(dotted) or []]
        cut_offs, names = [entry.get(number) for entry in entries], [entry.get(name) for entry in entries]
        if not cut_offs or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in cut_offs):
            wrong.append(f"{dotted} takes a list of {{{name}: ..., {number}: <number>}}, highest first")
        elif any(a <= b for a, b in zip(cut_offs, cut_offs[1:])) or cut_offs[-1] != 0 or len(set(names)) < len(names):
            wrong.append(f"{dotted}: each {number} below the one before, the last 0 (it takes what is left), "
                         f"each {name} once; not {cut_offs} for {names}")
    return wrong


def _refuse_unknown(known: Mapping, dotted_values: Mapping[str, Any], where: str) -> None:
    from difflib import get_close_matches

    unknown = unknown_settings(known, dotted_values)
    if unknown:
        first = unknown[0]
        close = get_close_matches(first, _dotted_keys(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; conf/base.yml lists every setting"
        more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:4])})" if len(unknown) > 1 else ""
        raise ConfigError(f"{where}: {first} is not a setting{hint}{more}")
    mistyped = mistyped_settings(known, dotted_values)
    if mistyped:
        raise ConfigError(f"{where}: {'; '.join(mistyped)}")


def _refuse_out_of_range(tree: Mapping, where: str) -> None:
    wrong = out_of_range_settings(tree)
    if wrong:
        more = f" (and {len(wrong) - 1} more: {'; '.join(wrong[1:3])})" if len(wrong) > 1 else ""
        raise ConfigError(f"{where}: {wrong[0]}{more}")


def setting_differences(before: Any, now: Any, path: str) -> list[str]:
    """The dotted settings under `path` that differ between two trees, as `key: before -> now`."""
    if isinstance(before, Mapping) and isinstance(now, Mapping):
        return [d for key in sorted(set(before) | set(now), key=str)
                for d in setting_differences(before.get(key), now.get(key), f"{path}.{key}")]
    return [] if before == now else [f"{path}: {before} -> {now}"]


# environment variable, the levels it takes (Python's logging; Spark's log4j), its default
LOG_LEVELS = (("FITBIT_LOG_LEVEL", ("debug", "info", "warning", "warn", "error", "critical"), "info"),
              ("SPARK_LOG_LEVEL", ("all", "trace", "debug", "info", "warn", "error", "fatal", "off"), "error"))


class ConfigError(ValueError):
    """Settings that cannot be read: an unknown FITBIT_ENV, a FITBIT_SETTINGS that is not a mapping."""


@dataclass(frozen=True)
class Settings:
    """All settings of one run. `raw` is the merged YAML tree; properties name what code uses."""

    raw: dict
    project_root: Path
    env: str = "local"
    overrides: dict = field(default_factory=dict)

    def get(self, dotted: str, default: Any = None) -> Any:
        return _value(self.raw, dotted, default)

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.project_root / path)

    @property
    def raw_dir(self) -> Path:
        return self._path(self.get("paths.raw_dir"))

    @property
    def lake_dir(self) -> Path:
        return self._path(self.get("paths.lake_dir"))

    @property
    def reports_dir(self) -> Path:
        return self.lake_dir / self.get("paths.reports_dir")

    @property
    def synthetic_dir(self) -> Path:
        return self.lake_dir / self.get("paths.synthetic_dir")

    @property
    def checkpoints_dir(self) -> Path:
        return self.lake_dir / "checkpoints"

    @property
    def bootstrap_servers(self) -> str:
        """The configured address, else the secret `bootstrap_servers` (a workspace's broker)."""
        if self.get("kafka.bootstrap_servers"):
            return self.get("kafka.bootstrap_servers")
        from .secrets import secret

        return secret(self, "bootstrap_servers") or ""

    @property
    def events_topic(self) -> str:
        return self.get("kafka.events_topic")

    @property
    def alerts_topic(self) -> str:
        return self.get("kafka.alerts_topic")

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.get("mlflow.tracking_uri") or f"sqlite:///{self.lake_dir / 'mlflow.db'}"

    def with_overrides(self, **dotted_values: Any) -> "Settings":
        """A copy with settings replaced, e.g. notebook parameters: {"paths.raw_dir": "..."}."""
        given = {dotted: value for dotted, value in dotted_values.items() if value not in (None, "")}   # not given
        _refuse_unknown(self.raw, given, "a setting given over conf/ (a parameter, stream.settings)")
        tree = copy.deepcopy(self.raw)
        _apply(tree, given)
        _refuse_out_of_range(tree, "a setting given over conf/ (a parameter, stream.settings)")
        return Settings(raw=tree, project_root=self.project_root, env=self.env)


def _extra_settings(text: str) -> dict:
    example = '\'{"silver.max_files_per_trigger": 1}\''
    try:
        extra = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"FITBIT_SETTINGS is not valid JSON or YAML{where}: give a mapping of dotted "
                          f"settings, e.g. FITBIT_SETTINGS={example}") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"FITBIT_SETTINGS is not a mapping: give dotted settings and their values, e.g. "
                          f"FITBIT_SETTINGS={example}")
    return extra


def load_settings(env: str | None = None, conf_dir: Path | None = None,
                  environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Load base.yml, merge <env>.yml over it, then environment variables, then overrides."""
    environ = os.environ if environ is None else environ
    conf_dir = conf_dir or find_conf_dir()
    env = env or environ.get("FITBIT_ENV", "local")
    tree = yaml.safe_load((conf_dir / "base.yml").read_text()) or {}
    env_file = conf_dir / f"{env}.yml"
    if env != "base" and not env_file.is_file():   # a typo would otherwise run on base.yml alone
        known = sorted(p.stem for p in conf_dir.glob("*.yml") if p.stem != "base")
        raise ConfigError(f"FITBIT_ENV={env}: there is no {env_file}; use one of {', '.join(known)}")
    if env_file.is_file():
        over = yaml.safe_load(env_file.read_text()) or {}
        if not isinstance(over, dict):
            raise ConfigError(f"{env_file} is not a mapping of settings: write it as conf/base.yml is written")
        _refuse_unknown(tree, over, f"{env_file}")
        _apply(tree, over)
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            _set_dotted(tree, dotted, environ[var])
    # any other setting, as YAML/JSON of dotted keys: FITBIT_SETTINGS='{"silver.max_files_per_trigger": 1}'
    extra = _extra_settings(environ.get("FITBIT_SETTINGS") or "{}")
    _refuse_unknown(tree, extra, "FITBIT_SETTINGS")
    _apply(tree, extra)
    _refuse_out_of_range(tree, "settings (conf/ and FITBIT_SETTINGS)")
    for var, levels, default in LOG_LEVELS:   # a typo here would surface deep in a step, as a traceback
        if (environ.get(var) or default).lower() not in levels:
            raise ConfigError(f"{var}={environ[var]} is not a log level: give one of {', '.join(levels)} (any case)")
    settings = Settings(raw=tree, project_root=conf_dir.parent, env=env)
    return settings.with_overrides(**overrides) if overrides else settings
