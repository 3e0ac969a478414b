"""Engagement segments learned as well as ruled: KMeans over per-user activity and sleep features.

The model is a scikit-learn Pipeline (impute, scale, cluster) so that whoever loads it from the
registry scores raw per-user means, sleep missing included, exactly as it was trained. It is logged
with a signature and an input example and registered under mlflow.model_name; every parameter comes
from conf/ (mlflow.model.*). Its clusters are compared with the rule-based segments of dim_user.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .config import Settings

ARTIFACT_NAME = "engagement_model"
# what skops (MLflow's safe serialization) must accept to load the pipeline: SimpleImputer keeps the
# numpy dtype it was fitted on; nothing that can run code
SKOPS_TRUSTED_TYPES = ["numpy.dtype"]


@dataclass(frozen=True)
class ModelConfig:
    features: tuple[str, ...]
    n_clusters: int
    random_state: int
    n_init: int
    impute_strategy: str
    min_users_per_cluster: int
    input_example_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "ModelConfig":
        m = settings.get("mlflow.model")
        return cls(features=tuple(m["features"]), n_clusters=int(m["n_clusters"]),
                   random_state=int(m["random_state"]), n_init=int(m["n_init"]),
                   impute_strategy=m["impute_strategy"], min_users_per_cluster=int(m["min_users_per_cluster"]),
                   input_example_rows=int(m["input_example_rows"]))


def registered_name(settings: Settings) -> str:
    """The registered model's name; a Unity Catalog registry needs catalog.schema.model, so there a bare
    name goes into the gold schema."""
    name = settings.get("mlflow.model_name")
    registry = settings.get("mlflow.registry_uri") or ""
    if registry.startswith("databricks-uc") and "." not in name:
        prefix = settings.get("storage.schema_prefix")
        schema = f"{prefix}_gold" if prefix else "gold"
        return f"{settings.get('storage.catalog')}.{schema}.{name}"
    return name


def model_inputs(features: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """The model's input columns of user_features (index user_key), as floats: a user without sleep has
    NaN there, which the pipeline imputes."""
    return features.reindex(columns=list(config.features)).astype("float64")


def why_no_model(inputs: pd.DataFrame, config: ModelConfig) -> str | None:
    """Why this data cannot be clustered into n_clusters groups (None: it can)."""
    needed = config.n_clusters * config.min_users_per_cluster
    if len(inputs) < needed:
        return (f"{len(inputs)} users with a valid day, fewer than n_clusters {config.n_clusters} x "
                f"min_users_per_cluster {config.min_users_per_cluster} = {needed}")
    distinct = len(inputs.drop_duplicates())
    if distinct < config.n_clusters:
        return f"only {distinct} distinct users' features for {config.n_clusters} clusters"
    return None


def engagement_pipeline(config: ModelConfig):
    from sklearn.cluster import KMeans
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # keep_empty_features: a feature nobody has yet (no sleep at all) stays a column, so the
    # signature and the model always have the configured inputs
    return Pipeline([("impute", SimpleImputer(strategy=config.impute_strategy, keep_empty_features=True)),
                     ("scale", StandardScaler()),
                     ("cluster", KMeans(n_clusters=config.n_clusters, random_state=config.random_state,
                                        n_init=config.n_init))])


def train(inputs: pd.DataFrame, config: ModelConfig):
    return engagement_pipeline(config).fit(inputs)


def assign_clusters(model, inputs: pd.DataFrame) -> pd.Series:
    return pd.Series(model.predict(inputs), index=inputs.index, name="cluster").astype("int64")


def segment_agreement(rule_segments: pd.Series, clusters: pd.Series, order: list[str],
                      features: pd.DataFrame | None = None) -> dict:
    """Rule segment x learned cluster over the users that have both. Each cluster is named after the rule
    segment most of its users have (a tie goes to the segment first in `order`); the agreement share is
    the part of users whose cluster's name is their own rule segment. Also the adjusted Rand index
    (label-free), and per cluster the users and the mean of each feature."""
    from sklearn.metrics import adjusted_rand_score

    joined = pd.concat([rule_segments.rename("segment"), clusters.rename("cluster")], axis=1, join="inner")
    crosstab = pd.crosstab(joined["segment"], joined["cluster"])
    rows = [s for s in order if s in crosstab.index] + [s for s in crosstab.index if s not in order]
    crosstab = crosstab.reindex(rows)
    cluster_segment = {int(c): str(crosstab[c].idxmax()) for c in crosstab.columns}   # idxmax: first of a tie
    agreeing = int((joined["cluster"].map(cluster_segment) == joined["segment"]).sum())
    profiles = joined.groupby("cluster").size().rename("users").to_frame()
    if features is not None:
        profiles = profiles.join(features.join(joined["cluster"], how="inner").groupby("cluster").mean(
            numeric_only=True))
    return {"crosstab": crosstab, "cluster_segment": cluster_segment, "clusters": int(crosstab.shape[1]),
            "users": int(len(joined)), "agreeing_users": agreeing,
            "agreement_share": agreeing / len(joined) if len(joined) else 0.0,
            "adjusted_rand_index": float(adjusted_rand_score(joined["segment"], joined["cluster"])),
            "cluster_profiles": profiles}


def input_example(inputs: pd.DataFrame, rows: int) -> pd.DataFrame:
    """A few users' inputs, complete ones first (a stored example is easier to read without NaN), with
    no user key: the example is a shape, not a person."""
    complete = inputs.dropna()
    return (complete if len(complete) else inputs).head(rows).reset_index(drop=True)


def pip_requirements() -> list[str]:
    """What the model needs to load, pinned to the versions it was trained with. Given explicitly: MLflow's
    inference would import the model in a subprocess (seconds) and list whatever the process had loaded
    (pytest, lz4, ...); MLflow adds its own pin."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in ("scikit-learn", "skops", "numpy", "pandas"):
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pass
    return pinned


def log_model(model, inputs: pd.DataFrame, name: str, config: ModelConfig):
    """Log the model in the active MLflow run with its signature and input example, and register it as
    `name`; returns MLflow's ModelInfo (registered_model_version, model_uri)."""
    import mlflow
    from mlflow.models import infer_signature

    example = input_example(inputs, config.input_example_rows)
    signature = infer_signature(inputs.reset_index(drop=True), model.predict(inputs))
    mlflow.log_params({f"model.{k}": v for k, v in (("registered_name", name),
                                                    ("users_trained_on", len(inputs)))})
    return mlflow.sklearn.log_model(model, name=ARTIFACT_NAME, signature=signature, input_example=example,
                                    registered_model_name=name, skops_trusted_types=SKOPS_TRUSTED_TYPES,
                                    pip_requirements=pip_requirements())
