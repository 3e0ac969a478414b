"""Where tables live: the one place that turns (layer, name) into a location.

Locally each table is a Delta folder <lake>/<layer>/<name>; on Databricks (storage.kind: catalog)
a Unity Catalog table <catalog>.<schema of the layer>.<name>. Readers and writers go through here.
"""
from __future__ import annotations

from contextlib import contextmanager

from pyspark.sql import DataFrame

from .config import Settings

TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


class Lake:
    def __init__(self, spark, settings: Settings):
        self.spark = spark
        self.settings = settings
        self.by_path = settings.get("storage.kind", "path") == "path"

    # --- locations ------------------------------------------------------------------------
    def path(self, layer: str, name: str) -> str:
        return str(self.settings.lake_dir / layer / name)

    def name(self, layer: str, name: str) -> str:
        catalog = self.settings.get("storage.catalog")
        schema = self.settings.get(f"storage.schemas.{layer}", layer)
        return f"{catalog}.{schema}.{name}"

    def checkpoint(self, layer: str, name: str) -> str:
        return str(self.settings.checkpoints_dir / layer / name)

    # --- reading --------------------------------------------------------------------------
    def exists(self, layer: str, name: str) -> bool:
        from delta.tables import DeltaTable

        if self.by_path:
            return DeltaTable.isDeltaTable(self.spark, self.path(layer, name))
        return self.spark.catalog.tableExists(self.name(layer, name))

    def read(self, layer: str, name: str) -> DataFrame:
        if self.by_path:
            return self.spark.read.format("delta").load(self.path(layer, name))
        return self.spark.read.table(self.name(layer, name))

    def read_stream(self, layer: str, name: str, **options) -> DataFrame:
        reader = self.spark.readStream.format("delta").options(**{k: str(v) for k, v in options.items()})
        return reader.load(self.path(layer, name)) if self.by_path else reader.table(self.name(layer, name))

    def delta(self, layer: str, name: str):
        from delta.tables import DeltaTable

        if self.by_path:
            return DeltaTable.forPath(self.spark, self.path(layer, name))
        return DeltaTable.forName(self.spark, self.name(layer, name))

    def version(self, layer: str, name: str) -> int | None:
        """The table's latest Delta version (None when it does not exist)."""
        if not self.exists(layer, name):
            return None
        return self.delta(layer, name).history(1).select("version").first()[0]

    def count(self, layer: str, name: str) -> int:
        return self.read(layer, name).count() if self.exists(layer, name) else 0

    # --- writing --------------------------------------------------------------------------
    def start_sink(self, stream_writer, layer: str, name: str):
        if self.by_path:
            return stream_writer.start(self.path(layer, name))
        return stream_writer.toTable(self.name(layer, name))

    def save(self, df: DataFrame, layer: str, name: str, mode: str = "append", **options) -> None:
        writer = df.write.format("delta").mode(mode).options(**{k: str(v) for k, v in options.items()})
        if mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        if self.by_path:
            writer.save(self.path(layer, name))
        else:
            writer.saveAsTable(self.name(layer, name))

    @contextmanager
    def idempotent(self, app_id: str, version: int):
        """Delta idempotent DML: a write already committed under (app_id, version) is skipped."""
        conf = self.spark.conf
        conf.set(TXN_APP_ID, app_id)
        conf.set(TXN_VERSION, str(version))
        try:
            yield
        finally:
            conf.unset(TXN_APP_ID)
            conf.unset(TXN_VERSION)
