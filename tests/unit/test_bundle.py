"""bundle.yml: valid against the Databricks bundle schema, every job a valid databricks-bundles Job,
and what the files mean checked too (what `databricks bundle validate` and a workspace would reject)."""
from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

from fitbit_lakehouse.bundle import BundleError, dashboard_json, job_parameters, job_tasks, load_bundle
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.params import JOB_PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
# `databricks bundle schema` (CLI commit 7bbe2852), as ../shared/databricks/bundle_schema.json, gzipped
SCHEMA = ROOT / "tests" / "fixtures" / "databricks" / "bundle_schema.json.gz"


@pytest.fixture(scope="module")
def validator():
    import jsonschema

    text = gzip.decompress(SCHEMA.read_bytes()).decode()
    # the schema's patterns use Go's \p{L} / \p{N} classes, which Python's re lacks: same meaning in re
    text = text.replace(r"[\\p{L}\\p{N}]", r"[^\\W_]").replace(r"\\p{L}", r"[^\\W\\d_]")
    return jsonschema.Draft202012Validator(json.loads(text))


def merged_config() -> dict:
    """bundle.yml with the files it includes merged in, as the CLI assembles it."""
    tree = yaml.safe_load((ROOT / "bundle.yml").read_text())
    for pattern in tree["include"]:
        for path in sorted(ROOT.glob(pattern)):
            for kind, items in (yaml.safe_load(path.read_text())["resources"]).items():
                tree.setdefault("resources", {}).setdefault(kind, {}).update(items)
    return tree


def notebook_parameters(path: Path) -> set[str]:
    """Names the notebook's parameters cell assigns (what it can read as widgets)."""
    cells = json.loads(path.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return set(re.findall(r"^(\w+)\s*=", "".join(cell["source"]), flags=re.M))


def test_bundle_and_includes_match_the_schema(validator):
    config = merged_config()
    assert sorted(config["resources"]) == ["dashboards", "jobs", "schemas", "volumes"]
    errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(config)]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_field(validator):
    config = copy.deepcopy(merged_config())
    config["resources"]["jobs"]["fitbit_pipeline"]["tasks"][0]["notebook_taks"] = {"notebook_path": "x"}
    assert list(validator.iter_errors(config)), "a misspelt task field must fail the schema"


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_job_is_a_valid_databricks_bundles_job(target):
    from databricks.bundles.jobs import DataSecurityMode, Job

    bundle = load_bundle(ROOT, target)
    assert set(bundle["resources"]["jobs"]) == {"fitbit_producer", "fitbit_pipeline"}
    for key, spec in bundle["resources"]["jobs"].items():
        job = Job.from_dict({k: v for k, v in spec.items() if k != "_dir"})
        assert job.tasks, key
        for cluster in job.job_clusters:
            assert cluster.new_cluster.data_security_mode == DataSecurityMode.SINGLE_USER
            assert cluster.new_cluster.spark_env_vars["FITBIT_ENV"] == "workspace"


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_validate_needs_no_var(target):
    """Every variable has a value for every target, so `databricks bundle validate -t <target>` needs no --var."""
    tree = yaml.safe_load((ROOT / "bundle.yml").read_text())
    given = set((tree["targets"][target] or {}).get("variables") or {})
    missing = [name for name, spec in tree["variables"].items() if "default" not in spec and name not in given]
    assert missing == []
    load_bundle(ROOT, target)   # and every ${...} resolves


def test_targets_isolate_dev_and_secure_prod():
    tree = yaml.safe_load((ROOT / "bundle.yml").read_text())
    dev, prod = tree["targets"]["dev"], tree["targets"]["prod"]
    assert dev["mode"] == "development" and dev["default"] is True
    assert prod["mode"] == "production" and prod["workspace"]["root_path"]
    # prod: one copy, in a folder only its owner writes to; everyone else may view the jobs and run the dashboard
    assert not prod["workspace"]["root_path"].startswith("/Workspace/Shared")
    prod_jobs = load_bundle(ROOT, "prod")["resources"]["jobs"]
    assert all({"group_name": "users", "level": "CAN_VIEW"} in job["permissions"] for job in prod_jobs.values())
    assert all("permissions" not in job for job in load_bundle(ROOT, "dev")["resources"]["jobs"].values())
    # dev: per-user schemas (hence tables, volumes, checkpoints) and experiment
    assert "${workspace.current_user.short_name}" in dev["variables"]["schema_prefix"]
    alice, bob = load_bundle(ROOT, "dev", user="alice"), load_bundle(ROOT, "dev", user="bob")
    lake = lambda b: next(p["default"] for p in b["resources"]["jobs"]["fitbit_pipeline"]["parameters"]  # noqa: E731
                          if p["name"] == "lake_dir")
    assert lake(alice) != lake(bob) and lake(alice).startswith("/Volumes/")
    assert lake(load_bundle(ROOT, "prod", user="alice")) == lake(load_bundle(ROOT, "prod", user="bob"))


def test_jobs_run_in_dependency_order_and_every_parameter_reaches_the_notebooks():
    bundle = load_bundle(ROOT, "dev")
    assert [t.key for t in job_tasks(bundle, "fitbit_producer")] == ["produce"]
    assert [t.key for t in job_tasks(bundle, "fitbit_pipeline")] == ["bronze", "silver", "gold", "insights"]
    # daily at 05:00 UTC (Quartz: seconds minutes hours day month weekday); a development-mode
    # target (dev) deploys schedules paused, a production one (prod) as they are
    schedule = bundle["resources"]["jobs"]["fitbit_pipeline"]["schedule"]
    assert schedule["quartz_cron_expression"].split()[:6] == ["0", "0", "5", "*", "*", "?"]
    assert schedule["timezone_id"] == "UTC" and schedule.get("pause_status", "UNPAUSED") == "UNPAUSED"
    targets = yaml.safe_load((ROOT / "bundle.yml").read_text())["targets"]
    assert (targets["dev"]["mode"], targets["prod"]["mode"]) == ("development", "production")
    assert "schedule" not in bundle["resources"]["jobs"]["fitbit_producer"]
    for key in ("fitbit_producer", "fitbit_pipeline"):
        names = {p["name"] for p in bundle["resources"]["jobs"][key]["parameters"]}
        for task in job_tasks(bundle, key):
            assert task.notebook.is_file()
            declared = notebook_parameters(task.notebook)
            assert set(JOB_PARAMETERS) <= declared, task.key   # settings parameters: every notebook
        used = set().union(*(notebook_parameters(t.notebook) for t in job_tasks(bundle, key)))
        assert names <= used, f"{key}: parameters no notebook reads: {names - used}"


def test_make_job_swaps_workspace_places_for_local_ones_unless_given(tmp_path):
    settings = load_settings(env="local", conf_dir=ROOT / "conf",
                             environ={"FITBIT_LAKE_DIR": str(tmp_path / "lake"), "KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    bundle = load_bundle(ROOT, "dev")
    values, localised = job_parameters(bundle, "fitbit_pipeline", settings, {"start_date": "2016-04-12"})
    assert values["lake_dir"] == str(tmp_path / "lake") and values["bootstrap_servers"] == "h:1"
    assert values["mlflow_experiment"] == settings.get("mlflow.experiment") and values["start_date"] == "2016-04-12"
    assert set(localised) == {"lake_dir", "bootstrap_servers", "mlflow_experiment"}
    values, localised = job_parameters(bundle, "fitbit_pipeline", settings, {"lake_dir": "/elsewhere"})
    assert values["lake_dir"] == "/elsewhere" and "lake_dir" not in localised
    with pytest.raises(BundleError, match="no parameter raw_dir"):
        job_parameters(bundle, "fitbit_pipeline", settings, {"raw_dir": "/x"})


def test_unknown_job_or_target_is_a_clear_error():
    with pytest.raises(BundleError, match="no target 'staging'"):
        load_bundle(ROOT, "staging")
    with pytest.raises(BundleError, match="no job 'nope'.*fitbit_pipeline"):
        job_tasks(load_bundle(ROOT, "dev"), "nope")


def test_dashboard_is_built_from_the_sql_queries():
    built = dashboard_json(ROOT / "sql" / "queries")
    committed = json.loads((ROOT / "dashboards" / "fitbit_wellness.lvdash.json").read_text())
    assert committed == built, "run `make lakeview` after changing sql/queries"
    datasets = {d["name"] for d in built["datasets"]}
    assert datasets == {p.stem for p in (ROOT / "sql" / "queries").glob("*.sql")}
    for item in built["pages"][0]["layout"]:
        query = item["widget"]["queries"][0]["query"]
        assert query["datasetName"] in datasets
        sql = "".join(next(d for d in built["datasets"] if d["name"] == query["datasetName"])["queryLines"])
        for field in query["fields"]:
            assert field["name"] in sql, (field["name"], query["datasetName"])
    spec = yaml.safe_load((ROOT / "resources" / "fitbit_wellness.dashboard.yml").read_text())
    dashboard = spec["resources"]["dashboards"]["fitbit_wellness"]
    assert (ROOT / "resources" / dashboard["file_path"]).resolve().is_file()


def test_packaging_leaves_spark_to_the_runtime_and_ignores_build_output():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "pyspark" not in runtime and "delta-spark" not in runtime
    assert any(d.startswith("pyspark") for d in project["optional-dependencies"]["local"])
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".databricks/", "build/", "dist/"} <= set(ignored)
    assert not (ROOT / "databricks.yml").exists(), "bundle.yml is the bundle root: never ship both"


def test_workspace_conf_uses_databricks_services():
    from fitbit_lakehouse.config import load_settings

    settings = load_settings(env="workspace", conf_dir=ROOT / "conf", environ={})
    assert settings.mlflow_tracking_uri == "databricks"
    assert settings.get("mlflow.experiment").startswith("/")
    assert settings.get("kafka.start_local_broker") is False
    assert settings.get("producer.synthetic_when_empty") is False
    assert settings.get("privacy.lake_secret_file") == ""
    assert settings.get("storage.kind") == "catalog"


def test_make_backfill_runs_gold_then_insights_with_its_date_range(monkeypatch, tmp_path, cli_signals):
    """`make backfill FROM=.. TO=..` is the pipeline job cut to its gold and insights tasks, both given
    the range as the job's start_date and end_date parameters (the notebooks' widgets)."""
    from fitbit_lakehouse import __main__ as cli
    from fitbit_lakehouse import pipeline

    recipe = re.search(r"^backfill:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    command = next(line for line in recipe.splitlines() if "-m fitbit_lakehouse" in line)
    argv = command.split("-m fitbit_lakehouse", 1)[1].replace("$(FROM)", "2016-04-14").replace("$(TO)", "2016-04-20")
    runs = []
    monkeypatch.setattr(pipeline, "execute_notebooks", lambda settings, notebooks, out_dir: runs.extend(notebooks))
    monkeypatch.setenv("FITBIT_LAKE_DIR", str(tmp_path / "lake"))
    assert cli.main(argv.split()) == 0
    assert [(r.name, r.path.name) for r in runs] == [("gold", "04_gold.ipynb"), ("insights", "05_insights.ipynb")]
    for run in runs:
        assert (run.widgets["start_date"], run.widgets["end_date"]) == ("2016-04-14", "2016-04-20")


@pytest.mark.parametrize("start, end, says", [("2016-13-01", "2016-04-20", "start_date='2016-13-01' is not a date"),
                                              ("2016-04-20", "2016-04-14", "is after end_date")])
def test_a_backfill_range_that_is_no_range_is_refused_before_any_notebook_starts(start, end, says, monkeypatch,
                                                                                 tmp_path):
    from fitbit_lakehouse import pipeline
    from fitbit_lakehouse.bundle import run_job

    monkeypatch.setattr(pipeline, "execute_notebooks", lambda *a: pytest.fail("a notebook was started"))
    settings = load_settings(env="local", conf_dir=ROOT / "conf", environ={"FITBIT_LAKE_DIR": str(tmp_path)})
    with pytest.raises(BundleError, match=says) as failure:
        run_job(settings, "fitbit_pipeline", only=["gold", "insights"], given={"start_date": start, "end_date": end})
    assert "\n" not in str(failure.value)
