"""Notebook parameters: widgets where `dbutils` exists, else the notebook's parameters cell.

A Databricks notebook task receives its job parameters (over its base_parameters) as widgets, read
with `dbutils.widgets.get`; a `parameters`-tagged cell is only a convention of papermill. So each
notebook passes its parameters cell's values to `read_params`, which returns the widget values where
there are widgets (Databricks, `make job`) and the cell's values elsewhere (JupyterLab, `make run`).
"""
from __future__ import annotations

from typing import Any, Mapping

# Job parameter -> dotted settings key. Every notebook declares these, so each task sees them all.
JOB_PARAMETERS = {
    "raw_dir": "paths.raw_dir",
    "lake_dir": "paths.lake_dir",
    "bootstrap_servers": "kafka.bootstrap_servers",
    "catalog": "storage.catalog",
    "schema_prefix": "storage.schema_prefix",
    "mlflow_experiment": "mlflow.experiment",
    "secret_scope": "secrets.scope",
}


def active_dbutils():
    """The notebook's `dbutils` (Databricks defines it in the notebook namespace), else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns.get("dbutils")


def read_params(dbutils=None, **cell_values: Any) -> dict[str, Any]:
    """The notebook's parameters: each one's widget value when there are widgets, typed like the
    parameters cell's value (widgets only hold text), else the cell's value itself."""
    dbutils = dbutils or active_dbutils()
    if dbutils is None:
        return dict(cell_values)
    values = {}
    for name, default in cell_values.items():
        dbutils.widgets.text(name, "" if default is None else str(default))   # declares it in the UI
        values[name] = typed_like(dbutils.widgets.get(name), default)
    return values


def typed_like(text: str, default: Any) -> Any:
    """A widget's text as the type of the cell's default (bool, int, float, or text; "" = None)."""
    text = (text or "").strip()
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no", ""):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if text == "":
        return default if isinstance(default, str) else None
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if default is None:   # parameters whose default is "not set": a flag or a number
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
    return text


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings overrides as dotted keys, the step's own arguments)."""
    overrides = {JOB_PARAMETERS[k]: v for k, v in params.items() if k in JOB_PARAMETERS}
    step_args = {k: v for k, v in params.items() if k not in JOB_PARAMETERS}
    return overrides, step_args


class LocalWidgets:
    """`dbutils.widgets` as a notebook task sees it: values pushed by the job, defaults otherwise."""

    def __init__(self, values: Mapping[str, Any]):
        self._pushed = {k: "" if v is None else str(v) for k, v in values.items()}
        self._declared: dict[str, str] = {}

    def text(self, name: str, default_value: str = "", label: str | None = None) -> None:
        self._declared.setdefault(name, default_value)

    def get(self, name: str) -> str:
        if name in self._pushed:
            return self._pushed[name]
        if name in self._declared:
            return self._declared[name]
        raise ValueError(f"No input widget named {name} is defined")

    def getAll(self) -> dict[str, str]:   # noqa: N802 - dbutils' own name
        return {**self._declared, **self._pushed}


class LocalSecrets:
    """`dbutils.secrets` from environment variables: scope fitbit, key user_key_secret ->
    FITBIT_SECRET_FITBIT_USER_KEY_SECRET (conf/local.env keeps them out of git)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        import os

        self._environ = os.environ if environ is None else environ

    @staticmethod
    def variable(scope: str, key: str) -> str:
        return f"FITBIT_SECRET_{scope}_{key}".upper().replace("-", "_")

    def get(self, scope: str, key: str) -> str:
        name = self.variable(scope, key)
        if name not in self._environ:
            raise ValueError(f"Secret does not exist with scope: {scope} and key: {key} (locally: set {name})")
        return self._environ[name]


class LocalDbutils:
    """The slice of Databricks' dbutils the notebooks use, for running a job's tasks locally."""

    def __init__(self, widgets: Mapping[str, Any], environ: Mapping[str, str] | None = None):
        self.widgets = LocalWidgets(widgets)
        self.secrets = LocalSecrets(environ)
