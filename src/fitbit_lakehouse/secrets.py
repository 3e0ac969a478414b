"""Secrets: `dbutils.secrets` where dbutils exists (Databricks, `make job`), else environment variables.

The scope is `secrets.scope` in conf/; locally a secret is the variable FITBIT_SECRET_<SCOPE>_<KEY>
(conf/local.env keeps such values out of git). Values are never logged.
"""
from __future__ import annotations

import os

from .config import Settings
from . import params
from .params import LocalSecrets


def secret(settings: Settings, key: str) -> str | None:
    """The secret's value, or None when the scope does not hold it."""
    scope = settings.get("secrets.scope")
    dbutils = params.active_dbutils()
    source = dbutils.secrets if dbutils is not None else LocalSecrets(os.environ)
    try:
        value = source.get(scope, key)
    except Exception:   # noqa: BLE001 - dbutils raises its own (Java) exception type for a missing secret
        return None
    return value or None


def where(settings: Settings, key: str) -> str:
    """Where a user puts a secret, for error messages."""
    scope = settings.get("secrets.scope")
    if params.active_dbutils() is not None:
        return f"secret scope {scope!r}, key {key!r}"
    return f"the environment variable {LocalSecrets.variable(scope, key)}"
