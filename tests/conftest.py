"""Shared fixtures: one SparkSession per test session, the real month-2 files, a real Kafka broker."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.kafka_broker import free_port

ROOT = Path(__file__).resolve().parents[1]
MONTH2 = ROOT.parent / "shared" / "data" / "fitbit" / "4.12.16-5.12.16"
MONTH2_SLICE = ROOT / "tests" / "fixtures" / "month2_slice"   # a few hundred real rows per file

# data times are naive wall-clock: run everything in a US zone with a DST gap to prove nothing shifts
os.environ.setdefault("TZ", "America/Chicago")
# Spark drivers of the tests (this process's, and those of the runs, kernels and streams it starts) JIT
# with C1 only: on a few hundred rows a JVM ends before C2's compiles pay off (the fault tests: about a
# third less CPU). Spark's own launcher variable, so nothing in the project changes; real runs keep C2.
# C1-only also shrinks the JIT's code cache to 48 MB, which a longer test (the cluster run) fills:
# "VirtualMachineError: Out of space in CodeCache"; so it keeps the default 240 MB.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m")
# a developer's kept Spark JVM (make spark-up) is not the tests': their runs start their own, except
# where a test asks for its own kept JVM (test_kept_jvm)
os.environ["SPARK_KEPT_JVM"] = "off"


@pytest.fixture
def mlflow_uris():
    """MLflow's tracking and registry URIs put back after the test, in the process and in its
    environment: mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which the notebook kernels of
    later tests (and their settings) would inherit, writing a stray mlflow.db at the project root."""
    import mlflow

    variables = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    environment = {v: os.environ.get(v) for v in variables}
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])
    for variable, value in environment.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value


def cli_said(stderr: str) -> list[str]:
    """The lines a CLI process printed on stderr (the Spark JVM's own start notice is kept off it)."""
    return stderr.splitlines()


@pytest.fixture
def cli_signals():
    """For a test that calls the CLI's main() in this process: the signal handlers main() installs
    (SIGTERM and SIGHUP as Ctrl-C) are put back afterwards, for the rest of the session."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def test_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def base_settings(test_root):
    """Settings of the test session: a lake under tmp, a broker port of its own."""
    (test_root / "raw").mkdir(exist_ok=True)   # empty: the synthetic data set where a test runs on it
    environ = {"FITBIT_LAKE_DIR": str(test_root / "lake"), "FITBIT_RAW_DIR": str(test_root / "raw"),
               "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{free_port()}"}
    return load_settings(env="local", conf_dir=ROOT / "conf", environ=environ).with_overrides(
        **{"spark.shuffle_partitions": 2})


@pytest.fixture(scope="session")
def spark(base_settings):
    from fitbit_lakehouse.spark import get_spark

    session = get_spark(base_settings, app_name="fitbit-lakehouse-tests")
    yield session
    session.stop()


def full_month2_available() -> bool:
    return (MONTH2 / "dailyActivity_merged.csv").is_file()


@pytest.fixture(scope="session")
def month2() -> Path:
    """The real month-2 files: all of them beside the repository (../shared), else the committed slice.
    Expected figures are computed from whichever files the test reads."""
    return MONTH2 if full_month2_available() else MONTH2_SLICE


@pytest.fixture(scope="session")
def month2_is_full(month2) -> bool:
    return month2 == MONTH2


@pytest.fixture(scope="session")
def broker(base_settings):
    """A real Apache Kafka broker (KRaft), started for the session and stopped after it."""
    from fitbit_lakehouse.kafka_broker import ensure_broker, stop_local_broker

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(Path(base_settings.lake_dir).parent / "broker")})
    handle = ensure_broker(settings)
    yield handle
    if handle.started_here:
        stop_local_broker(settings)



def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")   # pytest-xdist's workers have it; a serial run does not


def pytest_sessionstart(session):
    if _is_controller(session.config):
        from tests.e2e import chaos_report

        chaos_report.start()


def pytest_sessionfinish(session, exitstatus):
    """make chaos: the fault scenarios' table (CHAOS_REPORT names the file), once every worker is done."""
    if _is_controller(session.config):
        from tests.e2e import chaos_report

        chaos_report.write_table()
