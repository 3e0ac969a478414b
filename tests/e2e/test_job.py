"""`make job` as Databricks runs it: the bundle's two jobs, their tasks in order, job parameters pushed
to every notebook as widgets of a stand-in `dbutils`, and a backfill by date range.

The environment points at another raw folder, another lake and an unreachable broker, so a notebook
that ignored a widget would read, write or connect in the wrong place. Expected figures come from the
CSVs with pandas.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import shutil

import pandas as pd
import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.bundle import run_job
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.privacy import user_key_secret
from fitbit_lakehouse.tables import Lake
from tests.kafka_topics import topic_messages


pytestmark = pytest.mark.e2e

FILES = ("dailyActivity_merged.csv", "sleepDay_merged.csv", "hourlySteps_merged.csv", "weightLogInfo_merged.csv")
ENV_ONLY_FILE = "hourlyCalories_merged.csv"   # in the environment's raw folder, never the widget's


@pytest.fixture(scope="module")
def job_run(broker, month2, test_root):
    widget_raw, widget_lake = test_root / "job_raw", test_root / "job_lake"
    env_raw, env_lake = test_root / "env_raw", test_root / "env_lake"
    widget_raw.mkdir()
    for name in FILES:
        shutil.copy(month2 / name, widget_raw / name)
    env_raw.mkdir()
    shutil.copy(month2 / ENV_ONLY_FILE, env_raw / ENV_ONLY_FILE)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FITBIT_ENV", "local")
        env.setenv("FITBIT_RAW_DIR", str(env_raw))
        env.setenv("FITBIT_LAKE_DIR", str(env_lake))
        env.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost:1")   # nothing listens: only the widget's broker works
        env.setenv("FITBIT_SETTINGS", json.dumps({
            "kafka.start_local_broker": False, "kafka.events_topic": "e2e_job_events",
            "kafka.alerts_topic": "e2e_job_alerts", "spark.shuffle_partitions": 2}))
        settings = load_settings()
        given = {"raw_dir": str(widget_raw), "lake_dir": str(widget_lake),
                 "bootstrap_servers": broker.bootstrap_servers,
                 "mlflow_experiment": "e2e-job-widget-experiment"}
        run_job(settings, "fitbit_producer", given=given, ignore_unknown=True)
        run_job(settings, "fitbit_pipeline", given=given, ignore_unknown=True)
        widget_settings = settings.with_overrides(**{"paths.lake_dir": str(widget_lake),
                                                     "kafka.bootstrap_servers": broker.bootstrap_servers})
        yield {"settings": settings, "widget_settings": widget_settings, "given": given,
               "env_lake": env_lake, "widget_lake": widget_lake}


def _key(fitbit_id: int, secret: str) -> str:
    return hmac.new(secret.encode(), str(fitbit_id).encode(), hashlib.sha256).hexdigest()[:32]


def test_widgets_choose_raw_folder_lake_and_broker(job_run):
    lake = job_run["widget_lake"]
    ledger = json.loads((lake / "_producer" / "ledger.json").read_text())
    assert set(FILES) <= set(json.dumps(ledger).split('"'))   # the widget's files were sent ...
    assert ENV_ONLY_FILE not in json.dumps(ledger)   # ... and not the environment's
    for layer, table in (("bronze", "events"), ("silver", "daily_activity"), ("gold", "kpi_daily_wellness")):
        assert (lake / layer / table / "_delta_log").is_dir(), f"{layer}.{table} not under the widget's lake_dir"
    assert not job_run["env_lake"].exists() or not any(job_run["env_lake"].rglob("_delta_log"))



def test_the_kernels_spark_scratch_is_gone_after_the_job(job_run):
    # the kernel's JVM wrote its shuffle files here, and was killed with the kernel at the end of the run
    scratch = job_run["widget_lake"] / job_run["settings"].get("spark.scratch_dir")
    assert scratch.is_dir() and not any(scratch.iterdir())


def test_job_gold_matches_the_csv(job_run, spark, month2):
    settings = job_run["widget_settings"]
    secret = user_key_secret(settings)
    daily = pd.read_csv(month2 / "dailyActivity_merged.csv")
    daily["user_key"] = daily["Id"].map(lambda i: _key(i, secret))
    daily["date_key"] = pd.to_datetime(daily["ActivityDate"], format="%m/%d/%Y").dt.strftime("%Y%m%d").astype(int)
    fact = Lake(spark, settings).read("gold", "fact_daily_activity").toPandas()
    got = fact.set_index(["user_key", "date_key"]).sort_index()
    want = daily.set_index(["user_key", "date_key"]).sort_index()
    assert got.index.equals(want.index)
    assert (got["total_steps"].values == want["TotalSteps"].values).all()
    kpi = Lake(spark, settings).read("gold", "kpi_daily_wellness").toPandas()
    assert len(kpi) == int((daily["TotalSteps"] > 0).sum())


def test_mlflow_experiment_widget_reaches_insights(job_run):
    import mlflow

    # the store under the widget's lake, by path: not whatever an inherited MLFLOW_TRACKING_URI names
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{job_run['widget_lake'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(job_run["given"]["mlflow_experiment"])
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id])


def test_backfill_rebuilds_only_its_date_range(job_run, spark):
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    settings = job_run["widget_settings"]
    lake = Lake(spark, settings)
    before = lake.read("gold", "kpi_daily_wellness").toPandas()
    dates = sorted(before["date_key"].unique())
    first, last = dates[len(dates) // 3], dates[2 * len(dates) // 3]
    DeltaTable.forPath(spark, lake.path("gold", "kpi_daily_wellness")).update(set={"wellness_score": F.lit(-1.0)})

    iso = lambda key: f"{str(key)[:4]}-{str(key)[4:6]}-{str(key)[6:]}"  # noqa: E731
    # the 04_gold notebook's own two calls, in this process (its JVM is warm; a kernel would start
    # another): the job run above proved widgets reach notebook_settings, so what a backfill adds is
    # which user-days gold rebuilds
    settings, args = pipeline.notebook_settings(
        lake_dir=job_run["given"]["lake_dir"], bootstrap_servers=job_run["given"]["bootstrap_servers"],
        mlflow_experiment=job_run["given"]["mlflow_experiment"], start_date=iso(first), end_date=iso(last))
    assert args == {"start_date": iso(first), "end_date": iso(last)}
    pipeline.gold_step(settings, **args)

    after = lake.read("gold", "kpi_daily_wellness").toPandas()
    merged = before.merge(after, on=["user_key", "date_key"], suffixes=("_before", "_after"))
    assert len(merged) == len(before) == len(after)
    inside = merged["date_key"].between(first, last)
    assert inside.any() and (~inside).any()
    # inside the range: rebuilt from silver, so as before the tampering; outside: untouched
    pd.testing.assert_series_equal(merged.loc[inside, "wellness_score_after"].reset_index(drop=True),
                                   merged.loc[inside, "wellness_score_before"].reset_index(drop=True),
                                   check_names=False)
    assert (merged.loc[~inside, "wellness_score_after"] == -1.0).all()


def _ids_in_csvs(month2) -> set[str]:
    """Every raw Fitbit Id and weight LogId of the input, as text: what no output may contain."""
    ids = set()
    for name in FILES:
        frame = pd.read_csv(month2 / name, dtype=str)
        for column in ("Id", "LogId"):
            if column in frame:
                ids |= set(frame[column].dropna())
    return ids


def _text_of(value) -> str:
    return json.dumps(value, default=str) if isinstance(value, (list, dict, tuple)) else str(value)


def test_no_raw_id_in_any_output(job_run, spark, month2):
    """Gold tables, the report and charts, MLflow's store and artifacts, the BI export and the alert
    messages hold no raw Fitbit Id, and no LogId (which maps back to one through the public data)."""
    from fitbit_lakehouse.gold import GOLD_KEYS
    from fitbit_lakehouse.insights import export_bi

    settings = job_run["widget_settings"]
    ids = _ids_in_csvs(month2)
    assert len(ids) > 10
    leaks = []

    def scan(where: str, text: str) -> None:
        found = [i for i in ids if i in text]
        if found:
            leaks.append(f"{where}: {found[:3]}")

    lake = Lake(spark, settings)
    assert lake.count("gold", "fact_weight") > 0   # the LogIds were there to leak
    for table in GOLD_KEYS:
        if lake.exists("gold", table):
            frame = lake.read("gold", table).toPandas()
            for column in frame.columns:
                scan(f"gold.{table}.{column}", " ".join(frame[column].map(_text_of)))
    export_bi(spark, settings)
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    tables = sorted(p.parent for p in (job_run["widget_lake"] / "gold").glob("*/_delta_log"))
    assert len(tables) >= 8
    for table in tables:   # make export: every gold table, whole, as Parquet and as CSV
        rows = DeltaTable(str(table)).to_pandas()
        bi = settings.reports_dir / "bi" / table.name
        extracts = {"parquet": pd.read_parquet(bi.with_suffix(".parquet")), "csv": pd.read_csv(bi.with_suffix(".csv"))}
        for form, extract in extracts.items():
            assert (list(extract.columns), len(extract)) == (list(rows.columns), len(rows)), (table.name, form)
        whole = [f.name for f in DeltaTable(str(table)).to_pyarrow_table().schema if pa.types.is_integer(f.type)]
        parquet, csv = pq.read_schema(bi.with_suffix(".parquet")), pd.read_csv(bi.with_suffix(".csv"), dtype=str)
        for column in whole:   # whole numbers stay whole, nulls or not (minutes_asleep was 458.0)
            assert pa.types.is_integer(parquet.field(column).type), (table.name, column)
            assert csv[column].dropna().str.fullmatch(r"-?\d+").all(), (table.name, column)
    outputs = [p for p in job_run["widget_lake"].rglob("*") if p.is_file()
               and not any(part in ("bronze", "silver", "checkpoints", "kafka", "_producer", "_secrets", "gold")
                           for part in p.relative_to(job_run["widget_lake"]).parts)]
    assert any(p.suffix == ".png" for p in outputs) and any(p.suffix == ".parquet" for p in outputs)
    for path in outputs:   # reports, BI extracts, the MLflow store and its artifacts
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            scan(str(path), " ".join(" ".join(frame[c].map(_text_of)) for c in frame.columns))
        else:
            scan(str(path), path.read_bytes().decode("latin-1"))
    messages = [(m.key or b"") + b" " + (m.value or b"")   # aborted transactions' too: all that was sent
                for m in topic_messages(settings.bootstrap_servers, settings.alerts_topic, committed_only=False)]
    assert messages
    for message in messages:
        scan("alert message", message.decode())
    assert not leaks, leaks
