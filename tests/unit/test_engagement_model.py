"""The learned engagement segments: trained on a tiny frame, registered in a SQLite MLflow store under
tmp, loaded back from the registry and used to score a user."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitbit_lakehouse import engagement_model as em
from fitbit_lakehouse.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["High", "Medium", "Low", "Unknown"]


def _settings(tmp_path, **overrides):
    return load_settings(env="local", conf_dir=ROOT / "conf", environ={}).with_overrides(
        **{"paths.lake_dir": str(tmp_path), "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
           **overrides})


def _features() -> pd.DataFrame:
    """Six users in three clear groups; u2 and u5 never logged sleep."""
    return pd.DataFrame({
        "mean_daily_steps": [15000, 14000, 8000, 8500, 2000, 2500],
        "mean_active_minutes": [320, 300, 220, 210, 90, 100],
        "mean_sedentary_minutes": [600, 650, 800, 780, 1200, 1150],
        "mean_minutes_asleep": [400, np.nan, 420, 410, 300, np.nan],
        "mean_sleep_efficiency": [0.93, np.nan, 0.91, 0.92, 0.85, np.nan],
        "valid_days": [30, 28, 25, 30, 20, 22],
    }, index=pd.Index([f"u{i}" for i in range(6)], name="user_key"))


def test_model_inputs_are_the_configured_features_as_floats(tmp_path):
    config = em.ModelConfig.from_settings(_settings(tmp_path))
    inputs = em.model_inputs(_features(), config)
    assert list(inputs.columns) == list(config.features) and (inputs.dtypes == "float64").all()
    assert inputs["mean_minutes_asleep"].isna().sum() == 2


def test_no_model_for_too_few_users(tmp_path):
    config = em.ModelConfig.from_settings(_settings(tmp_path))   # 3 clusters x 2 users each
    inputs = em.model_inputs(_features(), config)
    assert em.why_no_model(inputs, config) is None
    assert "5 users with a valid day, fewer than n_clusters 3 x min_users_per_cluster 2 = 6" == \
        em.why_no_model(inputs.head(5), config)
    same = pd.concat([inputs.head(1)] * 6)
    assert em.why_no_model(same, config) == "only 1 distinct users' features for 3 clusters"


def test_segment_agreement_names_clusters_by_their_majority():
    rule = pd.Series({"a": "High", "b": "High", "c": "Medium", "d": "Low", "e": "Low", "f": "Unknown"})
    clusters = pd.Series({"a": 2, "b": 2, "c": 2, "d": 0, "e": 1})
    agreement = em.segment_agreement(rule, clusters, ORDER)
    assert agreement["cluster_segment"] == {0: "Low", 1: "Low", 2: "High"}
    assert agreement["users"] == 5 and agreement["agreeing_users"] == 4     # c: Medium in a High cluster
    assert agreement["agreement_share"] == pytest.approx(0.8)
    assert list(agreement["crosstab"].index) == ["High", "Medium", "Low"]
    assert agreement["crosstab"].loc["High", 2] == 2 and agreement["clusters"] == 3
    assert agreement["cluster_profiles"]["users"].to_dict() == {0: 1, 1: 1, 2: 3}


def test_segment_agreement_tie_goes_to_the_segment_first_in_order():
    rule = pd.Series({"a": "Low", "b": "High"})
    agreement = em.segment_agreement(rule, pd.Series({"a": 0, "b": 0}), ORDER)
    assert agreement["cluster_segment"] == {0: "High"}


def test_registered_name_in_unity_catalog_goes_into_the_gold_schema(tmp_path):
    assert em.registered_name(_settings(tmp_path)) == "fitbit_engagement_kmeans"
    uc = _settings(tmp_path, **{"mlflow.registry_uri": "databricks-uc", "storage.catalog": "main",
                                "storage.schema_prefix": "fitbit"})
    assert em.registered_name(uc) == "main.fitbit_gold.fitbit_engagement_kmeans"


def test_registered_model_loads_back_and_scores_a_user(tmp_path, mlflow_uris):
    import mlflow

    from fitbit_lakehouse.insights import start_experiment

    settings = _settings(tmp_path)
    config = em.ModelConfig.from_settings(settings)
    inputs = em.model_inputs(_features(), config)
    model = em.train(inputs, config)
    name = em.registered_name(settings)
    start_experiment(settings)
    with mlflow.start_run():
        info = em.log_model(model, inputs, name, config)
    assert info.registered_model_version is not None
    assert info.signature is not None and [c.name for c in info.signature.inputs.inputs] == list(config.features)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{info.registered_model_version}")
    user = inputs.loc[["u1"]].reset_index(drop=True)        # a user without sleep: imputed in the pipeline
    scored = np.asarray(loaded.predict(user))
    assert scored.shape == (1,)
    assert int(scored[0]) in range(config.n_clusters)
    assert int(scored[0]) == int(model.predict(user)[0])
    assert (np.asarray(loaded.predict(inputs.reset_index(drop=True))) == model.predict(inputs)).all()
    assert (tmp_path / "mlflow-artifacts").is_dir()          # artifacts beside the store, not in the cwd
