"""The source-file catalogue (file names, headers, scanning) and the settings loader."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fitbit_lakehouse.catalogue import BY_KIND, KINDS, kind_of_file, scan_sources
from fitbit_lakehouse.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

M1 = "Fitabase Data 3.12.16-4.11.16"
M2 = "Fitabase Data 4.12.16-5.12.16"

# The Kaggle headers, written out by hand (not derived from the catalogue).
NARROW_HEADERS = {
    "dailyActivity": ["Id", "ActivityDate", "TotalSteps", "TotalDistance", "TrackerDistance",
                      "LoggedActivitiesDistance", "VeryActiveDistance", "ModeratelyActiveDistance",
                      "LightActiveDistance", "SedentaryActiveDistance", "VeryActiveMinutes",
                      "FairlyActiveMinutes", "LightlyActiveMinutes", "SedentaryMinutes", "Calories"],
    "dailyCalories": ["Id", "ActivityDay", "Calories"],
    "dailyIntensities": ["Id", "ActivityDay", "SedentaryMinutes", "LightlyActiveMinutes",
                         "FairlyActiveMinutes", "VeryActiveMinutes", "SedentaryActiveDistance",
                         "LightActiveDistance", "ModeratelyActiveDistance", "VeryActiveDistance"],
    "dailySteps": ["Id", "ActivityDay", "StepTotal"],
    "sleepDay": ["Id", "SleepDay", "TotalSleepRecords", "TotalMinutesAsleep", "TotalTimeInBed"],
    "hourlySteps": ["Id", "ActivityHour", "StepTotal"],
    "hourlyCalories": ["Id", "ActivityHour", "Calories"],
    "hourlyIntensities": ["Id", "ActivityHour", "TotalIntensity", "AverageIntensity"],
    "minuteStepsNarrow": ["Id", "ActivityMinute", "Steps"],
    "minuteCaloriesNarrow": ["Id", "ActivityMinute", "Calories"],
    "minuteIntensitiesNarrow": ["Id", "ActivityMinute", "Intensity"],
    "minuteMETsNarrow": ["Id", "ActivityMinute", "METs"],
    "minuteSleep": ["Id", "date", "value", "logId"],
    "heartrate_seconds": ["Id", "Time", "Value"],
    "weightLogInfo": ["Id", "Date", "WeightKg", "WeightPounds", "Fat", "BMI", "IsManualReport", "LogId"],
}
WIDE_PREFIXES = {"minuteStepsWide": "Steps", "minuteCaloriesWide": "Calories",
                 "minuteIntensitiesWide": "Intensity"}


# --- kind_of_file ------------------------------------------------------------------------

@pytest.mark.parametrize("name, kind", [
    ("dailyActivity_merged.csv", "dailyActivity"),
    ("DAILYACTIVITY_MERGED.CSV", "dailyActivity"),
    ("dailyactivity_merged.csv", "dailyActivity"),
    ("heartrate_seconds_merged.csv", "heartrate_seconds"),
    ("minuteMETsNarrow_merged.csv", "minuteMETsNarrow"),
    ("minuteStepsWide_merged.csv", "minuteStepsWide"),
    ("weightLogInfo_merged.csv", "weightLogInfo"),
    ("sleepDay_merged.csv", "sleepDay"),
])
def test_kind_of_file_known(name, kind):
    found = kind_of_file(Path("/some/dir") / name)
    assert found is not None and found.kind == kind


@pytest.mark.parametrize("name", [
    "notes.csv", "dailyActivity.csv", "dailyActivity_merged.txt", "dailyActivity_merged.csv.bak",
    "unknownThing_merged.csv", "xdailyActivity_merged.csv", "",
])
def test_kind_of_file_unknown(name):
    assert kind_of_file(Path("/some/dir") / name if name else Path("")) is None


def test_every_kaggle_file_has_a_kind():
    stems = list(NARROW_HEADERS) + list(WIDE_PREFIXES)
    assert sorted(k.kind for k in KINDS) == sorted(stems)
    for stem in stems:
        assert kind_of_file(Path(f"{stem}_merged.csv")).kind == stem


# --- headers -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(NARROW_HEADERS))
def test_header_narrow(kind):
    assert BY_KIND[kind].header == NARROW_HEADERS[kind]


@pytest.mark.parametrize("kind", sorted(WIDE_PREFIXES))
def test_header_wide(kind):
    prefix = WIDE_PREFIXES[kind]
    header = BY_KIND[kind].header
    assert len(header) == 62
    assert header[:2] == ["Id", "ActivityHour"]
    assert header[2] == f"{prefix}00" and header[11] == f"{prefix}09" and header[-1] == f"{prefix}59"
    assert header[2:] == [prefix + str(i).zfill(2) for i in range(60)]


# --- scan_sources ------------------------------------------------------------------------

def _touch(path: Path, text: str = "Id\r\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_scan_sources_flat(tmp_path):
    a = _touch(tmp_path / "dailyActivity_merged.csv")
    h = _touch(tmp_path / "hourlySteps_merged.csv")
    u = _touch(tmp_path / "notes.csv")
    _touch(tmp_path / "readme.txt")                 # not a CSV: neither known nor unknown
    (tmp_path / "sub.csv").mkdir()                  # a folder named .csv is not a file
    scan = scan_sources(tmp_path)
    assert sorted((p, k.kind) for p, k in scan.files) == sorted([(a, "dailyActivity"), (h, "hourlySteps")])
    assert scan.unknown == [u]


def test_scan_sources_month_folders(tmp_path):
    # created month 2 first, so the order cannot come from creation
    m2_daily = _touch(tmp_path / M2 / "dailyActivity_merged.csv")
    m2_sleep = _touch(tmp_path / M2 / "sleepDay_merged.csv")
    m1_daily = _touch(tmp_path / M1 / "dailyActivity_merged.csv")
    m1_weight = _touch(tmp_path / M1 / "weightLogInfo_merged.csv")
    unknown = _touch(tmp_path / M1 / "extra_merged.csv")
    scan = scan_sources(tmp_path)
    paths = [p for p, _ in scan.files]
    assert set(paths) == {m1_daily, m1_weight, m2_daily, m2_sleep}
    assert max(paths.index(m1_daily), paths.index(m1_weight)) < min(paths.index(m2_daily), paths.index(m2_sleep))
    assert dict((p, k.kind) for p, k in scan.files)[m2_sleep] == "sleepDay"
    assert scan.unknown == [unknown]


def test_scan_sources_month_order_not_alphabetical(tmp_path):
    # "10.12.15-11.11.15" sorts before "9.12.15-10.11.15" as text, but is later in time
    later = _touch(tmp_path / "Fitabase Data 10.12.15-11.11.15" / "dailyActivity_merged.csv")
    earlier = _touch(tmp_path / "Fitabase Data 9.12.15-10.11.15" / "dailyActivity_merged.csv")
    assert [p for p, _ in scan_sources(tmp_path).files] == [earlier, later]


def test_scan_sources_missing_dir(tmp_path):
    scan = scan_sources(tmp_path / "nope")
    assert scan.files == [] and scan.unknown == []


# --- settings ----------------------------------------------------------------------------

def test_load_settings_defaults():
    s = load_settings(env="local", conf_dir=CONF, environ={})
    assert s.raw_dir == ROOT / "data" / "raw"
    assert s.lake_dir == ROOT / "data"
    assert s.bootstrap_servers == "localhost:9092"
    assert s.events_topic == "fitbit_wellness_stream"
    assert s.alerts_topic == "fitbit_wellness_alerts"
    assert s.mlflow_tracking_uri == f"sqlite:///{ROOT / 'data' / 'mlflow.db'}"
    assert s.get("kpi.activity.steps_goal") == 10000
    assert s.get("storage.kind") == "path"      # from local.yml, merged over base.yml
    assert s.get("no.such.key", "dflt") == "dflt"


def test_load_settings_environ_overrides(tmp_path):
    environ = {"FITBIT_RAW_DIR": str(tmp_path / "raw"), "FITBIT_LAKE_DIR": str(tmp_path / "lake"),
               "KAFKA_BOOTSTRAP_SERVERS": "broker:29092", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    s = load_settings(env="local", conf_dir=CONF, environ=environ)
    assert s.raw_dir == tmp_path / "raw"
    assert s.lake_dir == tmp_path / "lake"
    assert s.checkpoints_dir == tmp_path / "lake" / "checkpoints"
    assert s.reports_dir == tmp_path / "lake" / "reports"
    assert s.synthetic_dir == tmp_path / "lake" / "_synthetic"
    assert s.bootstrap_servers == "broker:29092"
    assert s.mlflow_tracking_uri == "http://mlflow:5000"


def test_load_settings_relative_env_path_and_empty_env_value():
    s = load_settings(env="local", conf_dir=CONF,
                      environ={"FITBIT_LAKE_DIR": "elsewhere", "KAFKA_BOOTSTRAP_SERVERS": ""})
    assert s.lake_dir == ROOT / "elsewhere"                # relative to the project root
    assert s.bootstrap_servers == "localhost:9092"         # an empty variable overrides nothing
    assert s.mlflow_tracking_uri == f"sqlite:///{ROOT / 'elsewhere' / 'mlflow.db'}"


def test_load_settings_keyword_overrides():
    s = load_settings(env="local", conf_dir=CONF, environ={"FITBIT_LAKE_DIR": "/a"},
                      **{"paths.lake_dir": "/b", "kafka.partitions": 7})
    assert s.lake_dir == Path("/b") and s.get("kafka.partitions") == 7


def test_with_overrides_ignores_empty_values():
    s = load_settings(env="local", conf_dir=CONF, environ={"FITBIT_LAKE_DIR": "/lake"})
    t = s.with_overrides(**{"paths.lake_dir": "", "paths.raw_dir": None, "kafka.bootstrap_servers": "h:1",
                            "producer.linger_ms": 0, "spark.conf.spark.sql.ansi.enabled": "v"})
    assert t.lake_dir == Path("/lake")
    assert t.get("paths.raw_dir") == "data/raw"
    assert t.bootstrap_servers == "h:1"
    assert t.get("producer.linger_ms") == 0          # a falsy non-empty value still applies
    assert t.get("spark.conf")["spark.sql.ansi.enabled"] == "v"   # Spark's own settings: any key
    # the original is untouched
    assert s.bootstrap_servers == "localhost:9092" and s.get("spark.shuffle_partitions") == 4
    assert "spark.sql.ansi.enabled" not in s.get("spark.conf")


def test_load_settings_fitbit_settings_variable():
    environ = {"FITBIT_SETTINGS": '{"silver.max_files_per_trigger": 1, "kpi.activity.steps_goal": 8000}'}
    s = load_settings(env="local", conf_dir=CONF, environ=environ)
    assert s.get("silver.max_files_per_trigger") == 1
    assert s.get("kpi.activity.steps_goal") == 8000
    assert s.get("kpi.activity.mvpa_goal_minutes") == 30            # siblings untouched
    # keyword overrides come last
    s = load_settings(env="local", conf_dir=CONF, environ=environ, **{"kpi.activity.steps_goal": 9000})
    assert s.get("kpi.activity.steps_goal") == 9000


@pytest.mark.parametrize("settings, says", [
    ({"silver.max_file_per_trigger": 1}, "silver.max_file_per_trigger is not a setting; did you mean "
                                         "silver.max_files_per_trigger?"),
    ({"silvr.max_files_per_trigger": 1}, "silvr is not a setting; did you mean silver?"),
    ({"kpi.activity": {"steps_goal": 8000, "stps_weight": 1}}, "kpi.activity.stps_weight is not a setting"),
    ({"kpi.activity.steps_goal.daily": 1}, "kpi.activity.steps_goal.daily is not a setting"),
    ({"validation.rules.negative_values.enabled": False}, "validation.rules.negative_values is not a setting; "
                                                          "did you mean validation.rules.negative_value?"),
    ({"zzz": 1, "kpi.zzz": 2}, "zzz is not a setting; conf/base.yml lists every setting \\(and 1 more: kpi.zzz\\)"),
    ({"validation.rules.heart_rate_out_of_range.maximum": 100},
     "validation.rules.heart_rate_out_of_range.maximum is not a setting; did you mean "
     "validation.rules.heart_rate_out_of_range.max?"),
    ({"validation.rules.negative_value.enabled": "false"},   # the text would leave the rule on
     "validation.rules.negative_value.enabled takes true or false, not 'false'"),
    ({"kpi.activity.steps_goal": "8k"}, "kpi.activity.steps_goal takes a number, not '8k'"),   # failed in gold
    ({"kpi": 5}, "kpi takes a mapping of settings \\(as in conf/base.yml\\), not 5"),   # a TypeError in gold
    ({"kpi.segments": "High"}, "kpi.segments takes a list \\(as in conf/base.yml\\), not 'High'"),
    ({"stream.settings": 5}, "stream.settings takes a mapping of settings"),   # failed as make stream started
    ({"kpi.activity.steps_goal": None}, "kpi.activity.steps_goal takes a number, not null"),
])
def test_a_misspelled_setting_is_one_line_that_names_the_setting_meant(settings, says):
    """A typo in FITBIT_SETTINGS used to be taken silently: the run went on with the default."""
    import json

    from fitbit_lakehouse.config import ConfigError

    with pytest.raises(ConfigError, match=f"^FITBIT_SETTINGS: {says}") as failure:
        load_settings(env="local", conf_dir=CONF, environ={"FITBIT_SETTINGS": json.dumps(settings)})
    assert "\n" not in str(failure.value)


@pytest.mark.parametrize("settings, says", [
    ({"kpi.activity.steps_goal": 0}, "kpi.activity.steps_goal takes a number above 0, not 0"),   # divides
    ({"kpi.goal_alert_steps": -5}, "kpi.goal_alert_steps takes a number above 0, not -5"),
    ({"kpi.activity.steps_weight": 0.7}, "kpi.activity.steps_weight and kpi.activity.mvpa_weight are a weighted "
                                         "mean: they add up to 1, not 1.2"),   # scores above 100
    ({"kpi.wellness.decimals": 1.5}, "kpi.wellness.decimals takes a whole number from 0 to 10, not 1.5"),
    ({"silver.table_threads": 0}, "silver.table_threads takes a whole number from 1 up, not 0"),
    ({"producer.speed": -1}, "producer.speed takes a number from 0 up, not -1"),
    ({"dashboard.port": 70000}, "dashboard.port takes a whole number from 1 to 65535, not 70000"),
    ({"validation.rules.heart_rate_out_of_range.min": 300},
     "validation.rules.heart_rate_out_of_range: min 300 is above max 250"),
    ({"kpi.segments": [{"name": "High", "min_active_minutes": 180}, {"name": "Low", "min_active_minutes": 30}]},
     "kpi.segments: each min_active_minutes below the one before, the last 0"),   # a 20-minute day had none
    ({"kpi.segments": [{"name": "Low", "min_active_minutes": 0}, {"name": "High", "min_active_minutes": 270}]},
     "kpi.segments: each min_active_minutes below the one before"),
    ({"kpi.segments": [{"name": "High", "min_active_minutes": "270"}, {"name": "Low", "min_active_minutes": 0}]},
     "kpi.segments takes a list of {name: ..., min_active_minutes: <number>}, highest first"),
    ({"kpi.segments": ["High", "Low"]}, "kpi.segments takes a list of {name: ..., min_active_minutes: <number>}"),
    ({"validation.rules.heart_rate_out_of_range.max": 10}, "validation.rules.heart_rate_out_of_range: min 20 is above max 10"),
])
def test_a_number_setting_that_would_make_figures_meaningless_is_one_line(settings, says):
    """A goal of 0, weights that do not add up to 1, cut-offs out of order: none of them failed, the
    run went on and gold's figures meant nothing (a zero goal gave null scores, a negative goal was taken)."""
    import json

    from fitbit_lakehouse.config import ConfigError

    with pytest.raises(ConfigError, match="^settings \\(conf/ and FITBIT_SETTINGS\\): " + re.escape(says)) as failure:
        load_settings(env="local", conf_dir=CONF, environ={"FITBIT_SETTINGS": json.dumps(settings)})
    assert "\n" not in str(failure.value)


def test_number_settings_in_range_are_taken_and_checked_over_conf_as_well():
    import json

    from fitbit_lakehouse.config import ConfigError

    fitting = {"kpi.activity": {"steps_weight": 0.7, "mvpa_weight": 0.3}, "kpi.valid_day_min_steps": 0,
               "kpi.segments": [{"name": "Active", "min_active_minutes": 200}, {"name": "Rest", "min_active_minutes": 0}],
               "kafka.topic_config.retention.ms": -1, "spark.kept_jvm.claim_timeout_s": 0}
    s = load_settings(env="local", conf_dir=CONF, environ={"FITBIT_SETTINGS": json.dumps(fitting)})
    assert s.get("kpi.activity.steps_weight") == 0.7 and s.get("kpi.segments")[0]["name"] == "Active"
    with pytest.raises(ConfigError, match="^a setting given over conf/ .*: kpi.sleep.asleep_goal_minutes takes a "
                                          "number above 0, not 0$"):
        s.with_overrides(**{"kpi.sleep.asleep_goal_minutes": 0})   # a notebook parameter, stream.settings
    for env in ("local", "workspace"):   # the project's own settings are in range
        load_settings(env=env, conf_dir=CONF, environ={})
    for yaml_text, says in (("{kpi.activity.steps_goal: .nan}", "kpi.activity.steps_goal takes a finite number, not nan"),
                            ("{synthetic.users: .inf}", "synthetic.users takes a finite number, not inf")):
        with pytest.raises(ConfigError, match=re.escape(says)):   # NaN passed every comparison; inf failed in int()
            load_settings(env="local", conf_dir=CONF, environ={"FITBIT_SETTINGS": yaml_text})


def test_settings_under_maps_of_the_users_own_keys_are_taken(tmp_path):
    """Spark's and Delta's settings, topic configs, a stream's bounds and a rule's limits are open maps;
    a mapping value merges into its setting instead of replacing it; conf/<env>.yml is checked as well."""
    import json
    import shutil

    from fitbit_lakehouse.config import ConfigError

    environ = {"FITBIT_SETTINGS": json.dumps({
        "spark.conf": {"spark.sql.ansi.enabled": "false"}, "kafka.topic_config.segment.bytes": 1048576,
        "validation.rules.negative_value.enabled": False, "stream.settings": {"silver.max_files_per_trigger": 2},
        "kpi.activity": {"steps_goal": 8000}})}
    s = load_settings(env="local", conf_dir=CONF, environ=environ)
    assert s.get("spark.conf")["spark.sql.ansi.enabled"] == "false"
    assert s.get("spark.conf")["spark.databricks.delta.snapshotPartitions"] == 2   # merged, not replaced
    assert s.get("kafka.topic_config")["segment.bytes"] == 1048576
    assert s.get("validation.rules.negative_value.enabled") is False
    assert s.get("kpi.activity") == {**load_settings(env="local", conf_dir=CONF, environ={}).get("kpi.activity"),
                                     "steps_goal": 8000}
    with pytest.raises(ConfigError, match="is not a setting; did you mean silver.max_files_per_trigger"):
        s.with_overrides(**{"silver.max_file_per_trigger": 2})   # stream.settings and parameters go this way
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    dotted_inside = load_settings(env="local", conf_dir=CONF, environ={"FITBIT_SETTINGS": json.dumps(
        {"kpi": {"activity.steps_goal": 7000}})})   # a dotted key inside a mapping is the setting it names
    assert dotted_inside.get("kpi.activity.steps_goal") == 7000 and "activity.steps_goal" not in dotted_inside.get("kpi")
    (conf / "local.yml").write_text("kafka:\n  broker.heap: 1g\n")
    assert load_settings(env="local", conf_dir=conf, environ={}).get("kafka.broker.heap") == "1g"
    (conf / "local.yml").write_text("storage:\n  kind: path\nproducer:\n  sped: 2\n")
    with pytest.raises(ConfigError, match=r"local.yml: producer.sped is not a setting; did you mean producer.speed"):
        load_settings(env="local", conf_dir=conf, environ={})
    for env in ("local", "workspace"):   # the project's own env files name only settings
        load_settings(env=env, conf_dir=CONF, environ={})


def test_printed_uris_never_show_a_password():
    from fitbit_lakehouse.config import masked

    assert masked("postgresql://mlflow:hunter2@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert masked("https://token:abc@host/x and sqlite:///data/mlflow.db") == "https://token:***@host/x and sqlite:///data/mlflow.db"
    assert masked("localhost:9092") == "localhost:9092"


def test_every_rule_a_record_can_fail_is_named_in_conf():
    """CONTRACT: each validation rule is named in conf/; a quarantine reason is `rule` or `rule:column`."""
    import re

    import fitbit_lakehouse.quality as quality

    named = set(load_settings().get("validation.rules"))
    in_code = set(quality.STRUCTURAL_RULES)   # the reasons silver gives before typing (silver.py)
    in_code |= set(re.findall(r'_reason\(rules, "(\w+)"', Path(quality.__file__).read_text()))
    in_code |= {check for kind in KINDS for col in kind.columns for check in col.checks}
    in_code |= {check for kind in KINDS for check in kind.row_checks}
    assert len(in_code) > 10 and in_code <= named, sorted(in_code - named)


@pytest.mark.parametrize("environ, says", [
    ({"FITBIT_SETTINGS": "{bad json"}, "not valid JSON or YAML"),
    ({"FITBIT_SETTINGS": "[1, 2]"}, "not a mapping"),
    ({"FITBIT_ENV": "prod"}, "FITBIT_ENV=prod: there is no"),
    ({"FITBIT_LOG_LEVEL": "verbose"}, "FITBIT_LOG_LEVEL=verbose is not a log level: give one of debug, info"),
    ({"SPARK_LOG_LEVEL": "loud"}, "SPARK_LOG_LEVEL=loud is not a log level: give one of all, trace"),
])
def test_settings_that_cannot_be_read_are_one_line_that_says_what_to_give(environ, says):
    from fitbit_lakehouse.config import ConfigError

    with pytest.raises(ConfigError, match=says) as failure:
        load_settings(environ=environ)
    assert "\n" not in str(failure.value)
    if "FITBIT_ENV" in environ:
        assert "local, workspace" in str(failure.value)


def test_log_levels_are_taken_in_any_case(monkeypatch):
    """SPARK_LOG_LEVEL is documented in lower case, FITBIT_LOG_LEVEL in upper: either is taken in both."""
    import logging

    from fitbit_lakehouse.pipeline import settings_from_params

    for fitbit, spark in (("debug", "Info"), ("Warning", "warn"), ("ERROR", "ERROR"), ("", "")):
        load_settings(environ={"FITBIT_LOG_LEVEL": fitbit, "SPARK_LOG_LEVEL": spark})
    monkeypatch.setenv("FITBIT_LOG_LEVEL", "debug")
    settings_from_params()
    assert logging.getLogger().level == logging.DEBUG
    monkeypatch.setenv("FITBIT_LOG_LEVEL", "INFO")
    settings_from_params()


def test_a_driver_memory_spark_cannot_start_with_is_one_line_before_it_tries():
    from fitbit_lakehouse.config import ConfigError
    from fitbit_lakehouse.spark import require_driver_memory

    for enough in ("512m", "1g", "2G", "1536", "524288k", "0.5g", "1gb"):
        require_driver_memory(enough)
    with pytest.raises(ConfigError, match=r"^spark.driver_memory 480m is less than the 512m Spark needs to start"):
        require_driver_memory("480m")
    with pytest.raises(ConfigError, match="is not a size"):
        require_driver_memory("lots")
