"""The one SparkSession of a process: Delta + the Kafka connector locally, the existing one on Databricks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .config import Settings

_MIN_JAVA = 17


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def java_major_version() -> int | None:
    """The major version of the `java` Spark will start, or None when there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    for token in out.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and ("." in token or token.isdigit()):
            major = int(head)
            return int(token.split(".")[1]) if major == 1 else major
    return None


def require_java() -> None:
    """One readable line, instead of a JVM stack trace, when Java is missing or too old."""
    version = java_major_version()
    if version is None:
        raise SystemExit(f"Java not found: install a JDK {_MIN_JAVA}+ (e.g. `apt-get install "
                         f"openjdk-{_MIN_JAVA}-jdk-headless`) or set JAVA_HOME.")
    if version < _MIN_JAVA:
        raise SystemExit(f"Java {version} is too old: Spark 4 and Kafka 4 need Java {_MIN_JAVA}+; "
                         f"install a newer JDK or point JAVA_HOME at one.")


def maven_packages(settings: Settings) -> list[str]:
    """Delta and the Kafka connector, at the versions matching the installed Python packages."""
    import importlib.metadata as md

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    delta_version = md.version("delta-spark")
    return [f"io.delta:delta-spark_{spark_minor}_2.13:{delta_version}",
            f"{settings.get('spark.kafka_connector')}:{pyspark.__version__}"]


def packages_cached(settings: Settings) -> bool:
    """True when Ivy has already retrieved Delta and the Kafka connector (named group_artifact-version.jar)."""
    jars = settings.project_root / settings.get("spark.ivy_dir") / "jars"
    wanted = ["{}_{}-{}.jar".format(*coordinate.split(":")) for coordinate in maven_packages(settings)]
    return all((jars / name).is_file() for name in wanted)


def get_spark(settings: Settings, app_name: str | None = None):
    """The process's SparkSession, created once (getOrCreate returns the same one after)."""
    from pyspark.sql import SparkSession

    if on_databricks():
        spark = SparkSession.builder.getOrCreate()
        spark.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    # Python workers (pandas state functions) run in this interpreter, not whatever python3 is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    ivy_dir = settings.project_root / settings.get("spark.ivy_dir")
    builder = (
        SparkSession.builder.appName(app_name or settings.get("spark.app_name"))
        .master(os.environ.get("SPARK_MASTER", "local[*]"))
        .config("spark.jars.packages", ",".join(maven_packages(settings)))
        .config("spark.jars.ivy", str(ivy_dir))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(settings.get("spark.shuffle_partitions")))
        .config("spark.driver.memory", settings.get("spark.driver_memory"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # data times are naive wall-clock: NTZ everywhere, and no zone to shift Kafka timestamps by
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.sql.warehouse.dir", str(settings.lake_dir / "_warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={settings.lake_dir / '_derby'}")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark
