"""gold -> charts (PNG), a Markdown report and an MLflow run."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from .config import Settings
from .tables import Lake

log = logging.getLogger(__name__)

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


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


def _charts(kpi: pd.DataFrame, users: pd.DataFrame, hourly: pd.DataFrame | None, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    if len(kpi):
        by_day = kpi.groupby("day_of_week")["total_steps"].mean().reindex(WEEKDAYS)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        by_day.plot.bar(ax=ax, color="#4C72B0")
        ax.set(title="Mean steps by weekday (valid days)", xlabel="", ylabel="steps")
        save(fig, "steps_by_weekday.png")

        trend = kpi.dropna(subset=["wellness_score"]).groupby("date")["wellness_score"].mean()
        if len(trend):
            fig, ax = plt.subplots(figsize=(7, 3.5))
            trend.plot(ax=ax, marker="o", color="#55A868")
            ax.set(title="Mean wellness score per day", xlabel="", ylabel="score (0-100)")
            save(fig, "wellness_trend.png")

    if len(users):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        users["engagement_segment"].value_counts().plot.bar(ax=ax, color="#C44E52")
        ax.set(title="Users by engagement segment", xlabel="", ylabel="users")
        save(fig, "engagement_segments.png")

    if hourly is not None and len(hourly):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        hourly.groupby("hour")["steps"].mean().plot.bar(ax=ax, color="#8172B2")
        ax.set(title="Mean steps by hour of day", xlabel="hour", ylabel="steps")
        save(fig, "hourly_profile.png")
    return paths


def _report(summary: dict, charts: list[Path], out: Path) -> Path:
    lines = [f"# Fitbit wellness report ({datetime.now():%Y-%m-%d %H:%M})", "", "| KPI | value |",
             "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in charts]]
    path = out / "wellness_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def log_to_mlflow(settings: Settings, summary: dict, artifacts: list[Path]) -> str:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name = settings.get("mlflow.experiment")
    artifacts_under = settings.get("mlflow.artifact_location")
    if mlflow.get_experiment_by_name(name) is None:   # locally beside the tracking store, not in the cwd
        mlflow.create_experiment(name, artifact_location=(settings.lake_dir / artifacts_under).resolve().as_uri()
                                 if artifacts_under else None)
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=f"insights-{datetime.now():%Y%m%d-%H%M%S}") as run:
        mlflow.log_params({"kpi.steps_goal": settings.get("kpi.activity.steps_goal"),
                           "kpi.asleep_goal_minutes": settings.get("kpi.sleep.asleep_goal_minutes"),
                           "raw_dir": str(settings.raw_dir)})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        mlflow.log_dict(summary, "kpi_summary.json")
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def run_insights(spark, settings: Settings) -> dict:
    lake = Lake(spark, settings)
    dates = lake.read("gold", "dim_date").select("date_key", "date", "day_of_week")
    kpi = lake.read("gold", "kpi_daily_wellness").join(dates, "date_key", "left").toPandas()
    users = lake.read("gold", "dim_user").toPandas()
    hourly = (lake.read("gold", "fact_hourly_activity").groupBy("hour").agg(F.avg("steps").alias("steps"))
              .toPandas() if lake.exists("gold", "fact_hourly_activity") else None)
    out = settings.reports_dir
    summary = kpi_summary(kpi, users)
    charts = _charts(kpi, users, hourly, out)
    report = _report(summary, charts, out)
    run_id = log_to_mlflow(settings, summary, [report, *charts])
    log.info("insights: report %s, MLflow run %s", report, run_id)
    return {"summary": summary, "charts": [str(c) for c in charts], "report": str(report), "mlflow_run_id": run_id}


def export_bi(spark, settings: Settings) -> list[Path]:
    """`make export`: every gold table as Parquet and CSV under <reports>/bi/ for Power BI / Tableau."""
    from .gold import GOLD_KEYS

    lake = Lake(spark, settings)
    out = settings.reports_dir / "bi"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(GOLD_KEYS):
        if not lake.exists("gold", name):
            continue
        frame = lake.read("gold", name).toPandas()
        for suffix, write in ((".parquet", lambda p: frame.to_parquet(p, index=False)),
                              (".csv", lambda p: frame.to_csv(p, index=False))):
            path = out / f"{name}{suffix}"
            write(path)
            written.append(path)
    return written
