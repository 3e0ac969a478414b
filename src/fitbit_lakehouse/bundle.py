"""The Databricks bundle, read locally: `make job` runs a job of bundle.yml as Databricks would.

Databricks runs a job's tasks in `depends_on` order on the job cluster and hands each notebook task
the job's parameters, over the task's base_parameters, as widgets. `run_job` does the same with the
same notebooks in one local kernel (one Spark application, like the tasks sharing a job cluster),
with a stand-in `dbutils` whose widgets hold those values. Parameters whose bundle value is a
workspace location (a /Volumes path, the workspace's broker) get their local value instead, and say so.

It also builds the Lakeview dashboard of the bundle from sql/queries (`dashboard_json`).
"""
from __future__ import annotations

import getpass
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Settings, masked

_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
# job parameters that name a workspace location, and where their local value comes from
# Job parameters naming places in the workspace, and their local counterparts for `make job`
LOCAL_LOCATIONS = {
    "raw_dir": lambda settings: settings.raw_dir,
    "lake_dir": lambda settings: settings.lake_dir,
    "bootstrap_servers": lambda settings: settings.bootstrap_servers,
    "mlflow_experiment": lambda settings: settings.get("mlflow.experiment"),   # a workspace path in the bundle
}


class BundleError(RuntimeError):
    """bundle.yml does not define what was asked for; the message says what it does define."""


@dataclass(frozen=True)
class Task:
    key: str
    notebook: Path
    base_parameters: dict
    depends_on: tuple[str, ...]


def load_bundle(project_root: Path, target: str = "dev", user: str | None = None) -> dict:
    """bundle.yml with its includes merged, the target's overrides applied and ${...} resolved."""
    root = project_root / "bundle.yml"
    tree = yaml.safe_load(root.read_text())
    resources: dict = {}
    for pattern in tree.get("include", []):
        for path in sorted(project_root.glob(pattern)):
            included = yaml.safe_load(path.read_text()) or {}
            for kind, items in (included.get("resources") or {}).items():
                for key, resource in items.items():
                    resources.setdefault(kind, {})[key] = {**resource, "_dir": str(path.parent)}
    if target not in (tree.get("targets") or {}):
        raise BundleError(f"bundle.yml has no target {target!r}; it has {', '.join(tree.get('targets', {}))}")
    overrides = tree["targets"][target] or {}
    for kind, items in (overrides.get("resources") or {}).items():   # the CLI merges these over the includes
        for key, resource in items.items():
            resources.setdefault(kind, {}).setdefault(key, {}).update(resource)
    variables = {name: spec.get("default") for name, spec in (tree.get("variables") or {}).items()}
    variables.update(overrides.get("variables") or {})
    user = user or getpass.getuser()
    context = {
        "bundle": {"name": tree["bundle"]["name"], "target": target},
        "workspace": {"current_user": {"userName": f"{user}@localhost", "short_name": user}},
        "var": variables,
        "resources": resources,
    }
    return _resolve({"bundle": context["bundle"], "variables": variables, "resources": resources}, context)


def _lookup(context: dict, dotted: str) -> Any:
    node: Any = context
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BundleError(f"${{{dotted}}} does not resolve in bundle.yml")
        node = node[part]
    return node


def _resolve(value: Any, context: dict, depth: int = 0) -> Any:
    if depth > 10:
        raise BundleError("bundle.yml has a reference cycle")
    if isinstance(value, dict):
        return {k: _resolve(v, context, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, context, depth) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:   # a complex variable keeps its type
        return _resolve(_lookup(context, whole.group(1)), context, depth + 1)
    return _resolve(_REFERENCE.sub(lambda m: str(_lookup(context, m.group(1))), value), context, depth + 1)


def job_tasks(bundle: dict, job_key: str) -> list[Task]:
    """The job's notebook tasks in an order that respects depends_on."""
    jobs = bundle["resources"].get("jobs", {})
    if job_key not in jobs:
        raise BundleError(f"bundle.yml has no job {job_key!r}; it has {', '.join(jobs)}")
    job = jobs[job_key]
    tasks = {}
    for spec in job["tasks"]:
        if "notebook_task" not in spec:
            raise BundleError(f"task {spec['task_key']} is not a notebook task: `make job` runs notebook tasks")
        notebook = (Path(job["_dir"]) / spec["notebook_task"]["notebook_path"]).resolve()
        tasks[spec["task_key"]] = Task(spec["task_key"], notebook,
                                       dict(spec["notebook_task"].get("base_parameters") or {}),
                                       tuple(d["task_key"] for d in spec.get("depends_on", [])))
    ordered: list[Task] = []
    done: set[str] = set()
    while len(ordered) < len(tasks):
        ready = [t for k, t in tasks.items() if k not in done and set(t.depends_on) <= done]
        if not ready:
            raise BundleError(f"job {job_key}: depends_on has a cycle or names a missing task")
        for task in ready:
            ordered.append(task)
            done.add(task.key)
    return ordered


def job_parameters(bundle: dict, job_key: str, settings: Settings, given: dict[str, str],
                   ignore_unknown: bool = False) -> tuple[dict, dict]:
    """(the values pushed to every task, the ones replaced by their local value)."""
    job = bundle["resources"]["jobs"][job_key]
    values = {p["name"]: "" if p.get("default") is None else str(p["default"]) for p in job.get("parameters", [])}
    unknown = set(given) - set(values)
    if ignore_unknown:
        given = {k: v for k, v in given.items() if k in values}
    elif unknown:
        raise BundleError(f"job {job_key} has no parameter {', '.join(sorted(unknown))}; "
                          f"it has {', '.join(values)}")
    localised = {}
    for name, local_value in LOCAL_LOCATIONS.items():
        if name in values and name not in given:
            localised[name] = str(local_value(settings))
    return {**values, **localised, **given}, localised


def run_job(settings: Settings, job_key: str, target: str = "dev", given: dict[str, str] | None = None,
            only: list[str] | None = None, ignore_unknown: bool = False) -> None:
    """`make job`: the job's notebook tasks in order, job parameters pushed to each as widgets."""
    from .pipeline import BadDateRange, NotebookRun, date_range, execute_notebooks, settings_from_params
    from .params import JOB_PARAMETERS

    bundle = load_bundle(settings.project_root, target)
    tasks = job_tasks(bundle, job_key)
    if only:
        missing = set(only) - {t.key for t in tasks}
        if missing:
            raise BundleError(f"job {job_key} has no task {', '.join(sorted(missing))}")
        tasks = [t for t in tasks if t.key in only]
    values, localised = job_parameters(bundle, job_key, settings, dict(given or {}), ignore_unknown)
    try:   # a backfill's range, checked before any notebook starts
        date_range(values.get("start_date"), values.get("end_date"))
    except BadDateRange as exc:
        raise BundleError(str(exc)) from None
    print(f"Job {job_key} (target {target}): tasks {' -> '.join(t.key for t in tasks)}", flush=True)
    for name, value in values.items():
        note = "   (local value; on Databricks the bundle's)" if name in localised else ""
        print(f"  {name} = {masked(value)}{note}", flush=True)
    # the runner's own settings (broker, report lines) are the ones the tasks will see
    run_settings = settings_from_params(**{k: v for k, v in values.items() if k in JOB_PARAMETERS})
    runs = [NotebookRun(t.key, t.notebook, {**t.base_parameters, **values}) for t in tasks]
    execute_notebooks(run_settings, runs, settings.project_root / "notebooks" / "_executed" / job_key)


# --- the Lakeview dashboard ----------------------------------------------------------------------

# query file -> how the dashboard shows it: (widget type, x field, y fields, title)
DASHBOARD_WIDGETS = {
    "kpi_summary": ("counters", None, ["valid_user_days", "users", "mean_daily_steps", "mean_wellness_score",
                                       "mean_sleep_efficiency"], "Headline KPIs"),
    "wellness_trend": ("line", "week_start", ["mean_wellness_score"], "Weekly wellness score"),
    "steps_by_weekday": ("bar", "day_of_week", ["mean_steps"], "Mean steps by weekday"),
    "hourly_profile": ("bar", "hour", ["mean_steps"], "The average day: steps per hour"),
    "sleep_efficiency_vs_time_in_bed": ("bar", "hours_in_bed", ["mean_sleep_efficiency"],
                                        "Sleep efficiency by hours in bed"),
    "segment_mix": ("table", None, ["grain", "segment", "n", "pct"], "Engagement segments"),
    "goal_hit_rate": ("table", None, ["user_key", "engagement_segment", "valid_days", "goal_days",
                                      "goal_hit_rate", "mean_goal_hour"], "Daily step goal by user"),
}


def dashboard_json(queries_dir: Path) -> dict:
    """The Lakeview dashboard (serialized_dashboard) built from the .sql files: one dataset per query,
    a widget per dataset. Tables are unqualified: the bundle sets dataset_catalog and dataset_schema."""
    datasets, layout, y, charts = [], [], 0, 0
    for name, (kind, x_field, fields, title) in DASHBOARD_WIDGETS.items():
        sql = (queries_dir / f"{name}.sql").read_text()
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        query = "\n".join(lines).strip().rstrip(";")
        datasets.append({"name": name, "displayName": title,
                         "queryLines": [line + "\n" for line in query.splitlines()]})
        if kind == "counters":
            for i, field in enumerate(fields):
                layout.append(_widget(f"{name}_{field}", name, [field], {
                    "version": 2, "widgetType": "counter",
                    "encodings": {"value": {"fieldName": field, "displayName": field.replace("_", " ")}},
                    "frame": {"showTitle": True, "title": field.replace("_", " ")}},
                    {"x": i * 6 // len(fields), "y": y, "width": max(1, 6 // len(fields)), "height": 2}))
            y += 2
        elif kind == "table":
            y += 5 * (charts % 2)   # a half-filled chart row ends here
            charts = 0
            layout.append(_widget(name, name, fields, {
                "version": 1, "widgetType": "table",
                "encodings": {"columns": [{"fieldName": f, "displayName": f.replace("_", " ")} for f in fields]},
                "frame": {"showTitle": True, "title": title}}, {"x": 0, "y": y, "width": 6, "height": 6}))
            y += 6
        else:
            x_scale = "temporal" if kind == "line" else ("quantitative" if x_field in ("hour", "hours_in_bed")
                                                         else "categorical")
            layout.append(_widget(name, name, [x_field, *fields], {
                "version": 3, "widgetType": kind,
                "encodings": {"x": {"fieldName": x_field, "scale": {"type": x_scale},
                                    "displayName": x_field.replace("_", " ")},
                              "y": {"fieldName": fields[0], "scale": {"type": "quantitative"},
                                    "displayName": fields[0].replace("_", " ")}},
                "frame": {"showTitle": True, "title": title}},
                {"x": 3 * (charts % 2), "y": y, "width": 3, "height": 5}))   # two charts a row
            charts += 1
            y += 5 * (charts % 2 == 0)
    return {"datasets": datasets,
            "pages": [{"name": "overview", "displayName": "Fitbit wellness", "layout": layout}]}


def _widget(name: str, dataset: str, fields: list[str], spec: dict, position: dict) -> dict:
    return {"widget": {"name": name,
                       "queries": [{"name": "main_query", "query": {
                           "datasetName": dataset, "disaggregated": True,
                           "fields": [{"name": f, "expression": f"`{f}`"} for f in fields]}}],
                       "spec": spec},
            "position": position}


def write_dashboard(project_root: Path) -> Path:
    target = project_root / "dashboards" / "fitbit_wellness.lvdash.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(dashboard_json(project_root / "sql" / "queries"), indent=2) + "\n")
    return target
