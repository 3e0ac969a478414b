"""The one SparkSession of a process: Delta + the Kafka connector locally, the existing one on Databricks.

Locally, Spark's extra jars (Delta Lake, the Kafka connector and what they need beyond pyspark's own
jars) are resolved once with Maven into .cache/m2 (`make setup`) and handed to Spark as a jar list:
no Ivy resolution at start-up, and nothing read from ~/.m2 or ~/.ivy2. `make setup` also records the
classes a Spark session loads in a class-data-sharing archive of the JVM (.cache/spark-cds-*.jsa):
later JVMs map them instead of loading and verifying some 20,000 classes again, which takes seconds
off every start (each `make run`, each test process).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata as md
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from .config import ConfigError, Settings
from .maven import SetupError, local_repository, resolve

_MIN_JAVA = 17
# Java 24 dropped Subject.getSubject (JEP 486), which the Hadoop client in Spark 4.1 calls as it starts
_FIRST_UNSUPPORTED_JAVA = 24
_LOG4J = Path(__file__).with_name("log4j2.properties")
_exit_on_ctrl_c = False
_SCRATCH_LOCK = ".in-use"
_scratch_claim = None   # this process's scratch dir and its open lock file, once Spark has started
_scratch_claiming = threading.Lock()   # the warm-up thread and a step may start Spark at once
AFTER_CTRL_C = "what was committed is kept, and the next run goes on from there"   # exactly-once writes


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


@functools.lru_cache(maxsize=None)
def java_version_text(java_home: str | None) -> str | None:
    """What `java -version` prints, for the `java` Spark will start (None when there is none)."""
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        return subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None


def java_major_version() -> int | None:
    """The major version of the `java` Spark will start, or None when there is none."""
    out = java_version_text(os.environ.get("JAVA_HOME"))
    if out is None:
        return None
    for token in out.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and ("." in token or token.isdigit()):
            major = int(head)
            return int(token.split(".")[1]) if major == 1 else major
    return None


# Spark keeps 300 MiB of its heap for itself and will not start with less than 1.5 times that usable
MIN_DRIVER_MEMORY_MB = 512
_MEMORY_UNITS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def require_driver_memory(setting: str) -> None:
    """spark.driver_memory too small for Spark to start, or not a size: one line that says what to give
    (Spark's own words are "System memory 447741952 must be at least 471859200")."""
    text = str(setting).strip().lower().removesuffix("b")
    number, unit = (text[:-1], text[-1]) if text[-1:] in _MEMORY_UNITS_MB else (text, "m")
    try:
        megabytes = float(number) * _MEMORY_UNITS_MB[unit]
    except ValueError:
        raise ConfigError(f"spark.driver_memory {setting!r} is not a size: give one like 2g or 1024m") from None
    if megabytes < MIN_DRIVER_MEMORY_MB:
        raise ConfigError(f"spark.driver_memory {setting} is less than the {MIN_DRIVER_MEMORY_MB}m Spark needs to "
                          f"start: give {MIN_DRIVER_MEMORY_MB}m or more (month 2 runs in 1g)")


def require_java() -> None:
    """One readable line, instead of a JVM stack trace, when Java is missing, too old or too new."""
    version = java_major_version()
    if version is None:
        raise SetupError(f"Java not found: install a JDK {_MIN_JAVA}+ (e.g. `apt-get install "
                         f"openjdk-{_MIN_JAVA}-jdk-headless`) or set JAVA_HOME.")
    if version < _MIN_JAVA:
        raise SetupError(f"Java {version} is too old: Spark 4 and Kafka 4 need Java {_MIN_JAVA}+; "
                         f"install a newer JDK or point JAVA_HOME at one.")
    if version >= _FIRST_UNSUPPORTED_JAVA:
        raise SetupError(f"Java {version} is too new: Spark 4.1 does not start on Java {_FIRST_UNSUPPORTED_JAVA}+; "
                         f"install JDK 17 or 21 and point JAVA_HOME at it.")


# --- Spark's extra jars ------------------------------------------------------------------

def _pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def package_versions() -> dict[str, str]:
    """Versions of the Maven packages, matching the installed Python packages."""
    import pyspark

    return {"spark.version": pyspark.__version__,
            "spark.minor": ".".join(pyspark.__version__.split(".")[:2]),
            "delta.version": md.version("delta-spark")}


def _jar_list_file(settings: Settings) -> Path:
    v = package_versions()
    return settings.project_root / ".cache" / f"spark-jars-{v['spark.version']}-delta-{v['delta.version']}.json"


def extra_jars(settings: Settings, resolve_missing: bool = True) -> list[str]:
    """Jars to add to pyspark's own: Delta and the Kafka connector with the dependencies that pyspark
    does not already ship (its versions win; a second copy of e.g. Jackson would only shadow them)."""
    listing = _jar_list_file(settings)
    if listing.is_file():
        jars = json.loads(listing.read_text())
        if all(Path(j).is_file() for j in jars):
            return jars
    if not resolve_missing:
        raise SetupError("Spark's Delta and Kafka jars are not resolved yet: run `make setup`.")
    pom = settings.project_root / "tools" / "spark" / "pom.xml"
    artifacts = resolve(pom, local_repository(settings.project_root), package_versions())
    shipped = [p.name for p in _pyspark_jars_dir().glob("*.jar")]

    def ships(artifact: str) -> bool:
        return any(n.startswith(f"{artifact}-") and n[len(artifact) + 1:][:1].isdigit() for n in shipped)

    jars = [str(a.path) for a in artifacts if not ships(a.artifact)]
    listing.write_text(json.dumps(jars, indent=1))
    return jars


# --- class-data sharing: a faster JVM start ------------------------------------------------

CDS_QUIET = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]   # an unusable archive is skipped silently


def cds_archive(settings: Settings) -> Path:
    """The archive for this JVM and these jars: another Java or another jar list is another file (a JVM
    would refuse a stale archive anyway, and start without it)."""
    fingerprint = hashlib.sha256(json.dumps([
        java_version_text(os.environ.get("JAVA_HOME")), package_versions(),
        sorted(p.name for p in _pyspark_jars_dir().glob("*.jar")), extra_jars(settings, resolve_missing=False),
        settings.get("spark.driver_java_options") or []]).encode()).hexdigest()[:16]
    return settings.project_root / ".cache" / f"spark-cds-{fingerprint}.jsa"


def _cds_options(settings: Settings) -> list[str]:
    if not settings.get("spark.class_data_sharing"):
        return []
    try:
        archive = cds_archive(settings)
    except SetupError:
        return []
    return cds_options(archive)


def cds_options(archive: Path) -> list[str]:
    """The JVM options that map a class-data archive, when there is one."""
    return [f"-XX:SharedArchiveFile={archive}", *CDS_QUIET] if archive.is_file() else []


def record_cds_archive(archive: Path, record, what: str, switch: str) -> Path:
    """Keep an archive already in place; else drop the stale ones of its kind (made for another Java or
    jar list) and have record(dumped, work_dir) write a new one to `dumped`, returning None, or a
    line that says what went wrong."""
    if archive.is_file():
        return archive
    kind = archive.name.rsplit("-", 1)[0]
    for stale in archive.parent.glob(f"{kind}-*.jsa"):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix=f"fitbit-{kind}-") as work:
        dumped = Path(work) / "classes.jsa"
        problem = record(dumped, Path(work))
        if problem is not None or not dumped.is_file():
            raise SetupError(f"Could not record {what}'s class-data archive ({problem or 'none written'}); "
                             f"set {switch}: false in conf/local.yml to start without one.")
        shutil.move(str(dumped), archive)
    return archive


def build_cds_archive(settings: Settings) -> Path | None:
    """`make setup`: the classes of a Spark session at work (Delta reads, writes, MERGE, history and
    change feed, a stream, the Kafka source) recorded into the archive by a JVM of their own. None
    when switched off; an archive already in place is kept."""
    if not settings.get("spark.class_data_sharing"):
        return None

    def record(dumped: Path, work: Path) -> str | None:
        options = [*(settings.get("spark.driver_java_options") or []), f"-XX:ArchiveClassesAtExit={dumped}",
                   *CDS_QUIET]
        env = {**os.environ, "FITBIT_LAKE_DIR": str(work / "lake"), "FITBIT_SETTINGS": json.dumps(
            {"spark.class_data_sharing": False, "spark.driver_java_options": options, "spark.master": "local[2]"})}
        done = subprocess.run([sys.executable, "-c", "from fitbit_lakehouse.spark import _exercise; _exercise()"],
                              env=env, cwd=settings.project_root, capture_output=True, text=True, timeout=600)
        return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["no output"])[-1][:300]

    return record_cds_archive(cds_archive(settings), record, "Spark", "spark.class_data_sharing")


def _exercise() -> None:
    """What a pipeline run does with Spark, on a tiny table: run once under -XX:ArchiveClassesAtExit."""
    from .config import load_settings

    settings = load_settings()
    spark = get_spark(settings)
    table = str(settings.lake_dir / "t")
    frame = spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string")
    frame.write.format("delta").option("delta.enableChangeDataFeed", "true").save(table)
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, table).alias("t").merge(frame.alias("s"), "t.id = s.id") \
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    DeltaTable.forPath(spark, table).history(5).collect()
    spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(table).count()
    spark.read.format("delta").load(table).groupBy("v").count().collect()
    (spark.readStream.format("delta").load(table).writeStream.foreachBatch(lambda batch, _: batch.count())
     .option("checkpointLocation", str(settings.lake_dir / "c")).trigger(availableNow=True).start()
     .awaitTermination())
    spark.readStream.format("kafka").option("kafka.bootstrap.servers", "localhost:1") \
        .option("subscribe", "t").load().select("value").schema
    spark.stop()


# --- the session -------------------------------------------------------------------------

def _log_level() -> str:
    return os.environ.get("SPARK_LOG_LEVEL", "error").lower()


def jvm_options(settings: Settings) -> list[str]:
    """The driver JVM's options that do not depend on the run (a kept JVM has the same ones)."""
    level = _log_level()
    quiet = level in ("error", "fatal", "off")   # else debugging: stack traces and task failures too
    return [f"-Dlog4j2.configurationFile={_LOG4J.as_uri()}", f"-Dfitbit.spark.log.level={level}",
            f"-Dfitbit.spark.log.traces={'none' if quiet else 'full'}",
            f"-Dfitbit.spark.log.task_failures={'DENY' if quiet else 'NEUTRAL'}",
            f"-Dfitbit.spark.log.task_failures.level={'off' if quiet else level}",
            *(settings.get("spark.driver_java_options") or []), *_cds_options(settings)]


def java_options_text(options: list[str]) -> str:
    """JVM options as one spark.driver.extraJavaOptions string, each quoted where it needs it (Spark splits
    the string at spaces, so a lake or project path with a space in it stopped the JVM at start)."""
    return " ".join(shlex.quote(option) for option in options)


def exit_on_ctrl_c() -> None:
    """For the CLI: once Spark is up, Ctrl-C ends the process at once with one line, as a crash would
    (the lake's writes are exactly-once: the next run goes on from what was committed). PySpark's own
    handler cancels the jobs through the JVM from inside the call the main thread is waiting in: py4j
    "reentrant call" tracebacks, then the step's own errors."""
    global _exit_on_ctrl_c
    _exit_on_ctrl_c = True


def _exit_now(*_) -> None:
    from pyspark import SparkContext

    own_jvm = getattr(SparkContext._gateway, "proc", None)   # None when attached to a kept JVM
    if own_jvm is not None:
        own_jvm.kill()   # at once: its shutdown would print the stopped queries' errors on the console
    sys.stderr.write(f"interrupted: {AFTER_CTRL_C}\n")
    sys.stderr.flush()
    os._exit(130)


@contextmanager
def _stop_signals_left_to_python():
    """For the CLI: the Spark JVM started inside inherits SIGTERM and SIGHUP ignored, and a JVM leaves an
    ignored signal so (PySpark does the same with SIGINT). A SIGTERM to the whole process group
    (`timeout`, systemd), or the SIGHUP of a closed terminal, then reaches only this process, which stops
    as on Ctrl-C and ends its JVM itself."""
    if not (_exit_on_ctrl_c and threading.current_thread() is threading.main_thread()):
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def scratch_root(settings: Settings) -> Path:
    return settings.lake_dir / settings.get("spark.scratch_dir")   # an absolute dir stays as it is


def claim_scratch(settings: Settings) -> Path:
    """A scratch dir for this process's Spark JVM (its shuffle and spill files, its temp dirs and the
    native libraries it unpacks), held while the process lives. Spark deletes its files when its JVM
    ends normally, but a JVM killed with its process (a notebook kernel shut down with SIGKILL, kill -9,
    Ctrl-C) leaves them, and in /tmp every run would leave its raw records behind for good. Here the
    next start removes them (`sweep_scratch`)."""
    with _scratch_claiming:
        if _scratch_claim is None:
            _claim_scratch(scratch_root(settings))
        return _scratch_claim[0]


def _claim_scratch(root: Path) -> None:
    global _scratch_claim
    sweep_scratch(root)
    # made under a hidden name and locked before it is visible, so a sweep never takes it for a dead one
    token = uuid.uuid4().hex[:8]
    claiming = root / f".claim-{token}"
    claiming.mkdir(parents=True)
    lock = open(claiming / _SCRATCH_LOCK, "w")   # not inherited by the JVM: the lock is this process's
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:   # a file system without locks: the dir is used, and left for the user to remove
        pass
    scratch = root / f"{os.getpid()}-{token}"
    claiming.rename(scratch)
    _scratch_claim = (scratch, lock)


def sweep_scratch(root: Path) -> list[Path]:
    """Remove the scratch dirs below root whose process has ended (its lock is free); the removed ones."""
    removed = []
    for path in sorted(root.glob("[!.]*")) if root.is_dir() else []:
        try:
            fd = os.open(path / _SCRATCH_LOCK, os.O_RDWR)
        except OSError:   # not a scratch dir of this project
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:   # in use by a live process
            continue
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


# What the JVM prints on its own at start: Spark's launcher always adds the vector incubator module
JVM_START_NOTICES = (b"WARNING: Using incubator modules",)


_JVM_START = threading.Lock()   # one thread at a time swaps fd 2 (make run warms Spark up in a thread)


@contextmanager
def _jvm_start_notices_dropped():
    """The JVM started inside writes to this process's stderr (fd 2) for as long as it runs. Started with
    a pipe there instead, and the pipe copied to the real stderr by a thread, its start-up notice stays
    off the console; every other line of it passes through as before."""
    with _JVM_START:
        sys.stderr.flush()
        try:
            console = os.dup(2)
        except OSError:   # no stderr at all: nothing to keep clean
            yield
            return
        read_end, write_end = os.pipe()
        copier = threading.Thread(target=_copy_lines, args=(read_end, os.dup(console)), name="jvm-stderr",
                                  daemon=True)
        try:
            copier.start()   # before fd 2 is swapped: a thread that cannot start leaves stderr as it was
        except RuntimeError:
            for fd in (read_end, write_end, console):
                os.close(fd)
            yield
            return
        os.dup2(write_end, 2)
        os.close(write_end)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(console, 2)
            os.close(console)
            if failed:   # a JVM that did not start has ended: its last words before the error line
                copier.join(timeout=5)


def _copy_lines(read_end: int, out_fd: int) -> None:
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(out_fd, "wb", buffering=0) as out:
        for line in pipe:   # ends when the JVM (the last writer) ends
            if not line.startswith(JVM_START_NOTICES):
                out.write(line)


def get_spark(settings: Settings, app_name: str | None = None):
    """The process's SparkSession, created once (later calls return the same one)."""
    from pyspark.sql import SparkSession

    if on_databricks():
        spark = SparkSession.builder.getOrCreate()
        spark.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    require_driver_memory(settings.get("spark.driver_memory"))
    # Python workers run this interpreter (the venv), not whatever python3 is first on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from .spark_server import attach

    attach(settings)   # a kept Spark JVM (make spark-up), when one is up and free
    log_level = _log_level()
    scratch = claim_scratch(settings)
    java_options = java_options_text([f"-Dderby.system.home={settings.lake_dir / '_derby'}",
                                      f"-Djava.io.tmpdir={scratch}", *jvm_options(settings)])
    builder = (
        SparkSession.builder.appName(app_name or settings.get("spark.app_name"))
        .master(settings.get("spark.master"))
        .config("spark.jars", ",".join(extra_jars(settings)))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(settings.get("spark.shuffle_partitions")))
        .config("spark.driver.memory", settings.get("spark.driver_memory"))
        .config("spark.executor.memory", settings.get("spark.executor_memory"))
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.local.dir", str(scratch))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # data times are naive wall-clock: NTZ everywhere, and no zone to shift Kafka timestamps by
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.sql.warehouse.dir", str(settings.lake_dir / "_warehouse"))
    )
    for key, value in (settings.get("spark.conf") or {}).items():
        builder = builder.config(key, str(value))
    with _stop_signals_left_to_python(), _jvm_start_notices_dropped():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level.upper())
    if _exit_on_ctrl_c and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_now)   # over the handler PySpark has just installed
    return spark


def trigger_of(settings: Settings, layer: str, trigger: str | None = None) -> dict:
    """writeStream.trigger(**...) for a layer: availableNow (to the end, then stop) or processingTime."""
    trigger = trigger or settings.get(f"{layer}.trigger")
    if trigger == "availableNow":
        return {"availableNow": True}
    if trigger == "processingTime":
        return {"processingTime": settings.get(f"{layer}.processing_time")}
    raise ValueError(f"{layer}.trigger must be availableNow or processingTime, not {trigger!r}")
