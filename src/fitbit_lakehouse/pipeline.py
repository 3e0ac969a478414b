"""The five steps, as the notebooks and the CLI call them: each takes Settings and returns a summary.

`make run` executes the notebooks headless in order, all in one Jupyter kernel: one Python process
and one Spark application for the whole run, as the tasks of a Databricks job share their cluster.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, load_settings, masked
from .params import JOB_PARAMETERS, read_params

log = logging.getLogger(__name__)

NOTEBOOKS = ("01_produce", "02_bronze", "03_silver", "04_gold", "05_insights")


class StepFailed(RuntimeError):
    """A step of `make run` failed; the message says where to look."""


class RunInterrupted(RuntimeError):
    """Ctrl-C stopped a run of the notebooks (`make run`, `make job`) in the step it names."""


class LakeBusy(RuntimeError):
    """Another process is running the same step on the same lake."""


class DiskFull(RuntimeError):
    """A step's write found no space left on a disk (the lake's, Spark's scratch dir's)."""


class NotWritable(RuntimeError):
    """A step may not write where it has to: no permission, or a read-only file system."""


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


# how a full disk reads in the JVM's, the OS's and SQLite's (the MLflow store's) words
DISK_FULL_MARKS = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def is_disk_full(exc: BaseException) -> bool:
    """Whether exc, or an error it carries (a Spark task's, the JVM's), is a disk that is full."""
    from .tables import exception_text

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = exception_text(exc)
    return any(mark in text for mark in DISK_FULL_MARKS)


def disk_full_line(settings: Settings, step: str) -> str:
    from .kafka_broker import LocalBroker
    from .spark import scratch_root

    where = f"the lake {settings.lake_dir}"
    elsewhere = {"Spark's scratch dir": scratch_root(settings), "the local broker": LocalBroker(settings).home}
    for name, path in elsewhere.items():
        if not path.is_relative_to(settings.lake_dir):
            where += f" or of {name} {path}"
    return (f"{step} stopped: no space left on the disk of {where}. Free space there, or point FITBIT_LAKE_DIR "
            f"at a bigger disk (spark.scratch_dir moves Spark's scratch files alone); what was committed is "
            f"kept, and the next run goes on from there")


@contextmanager
def write_errors_said(settings: Settings, step: str):
    """A step's write that finds no room or no right to write is one line that says what to do: not a
    stack trace in a stage failure in a streaming query's error, nor an OSError's traceback (a disk with
    no room even for the step's lock file, a lake on a read-only file system)."""
    try:
        yield
    except (DiskFull, NotWritable):
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFull(disk_full_line(settings, step)) from exc
        if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE and _in_lake(settings, exc.filename):
            raise NotWritable(f"{step} cannot write {exc.filename} ({exc.strerror}): give this user the right to "
                              f"write there, or point FITBIT_LAKE_DIR at a folder it can write") from exc
        raise


def _in_lake(settings: Settings, filename) -> bool:
    """Whether filename is the lake dir or in it (a raw file that may not be read is another matter)."""
    return bool(filename) and Path(os.path.abspath(filename)).is_relative_to(os.path.abspath(settings.lake_dir))


def _holder_said(pid: str) -> str:
    """" (pid 31116: make stream)" for a lock's holder: a step held by make stream is held until Ctrl-C."""
    from .kafka_broker import _command_line

    if not pid.isdigit():
        return ""
    command = re.search(r"-m fitbit_lakehouse (\w[\w-]*)", _command_line(int(pid)))
    if command is None:
        return f" (pid {pid})"
    make = command.group(1) in ("run", "stream", "job", "alerts", "export", "vacuum", "lab", "dashboard")
    return f" (pid {pid}: {'make' if make else 'python -m fitbit_lakehouse'} {command.group(1)})"


@contextmanager
def writing(settings: Settings, step: str, doing: str | None = None):
    """Held while a step writes the lake: one process per step and lake at a time (two bronze or two
    silver queries on one checkpoint fail midway, and two producers would send the same rows twice).
    Other steps may run beside it, as `make stream` and a `produce` do. The system lets go of the lock
    when the process ends, however it ends. On Databricks a job's max_concurrent_runs does this.
    doing: what an error names as stopped (default: the step). A user-key secret other than the lake's
    stops the step here, before it starts a broker or Spark."""
    from .privacy import require_the_lakes_secret
    from .spark import on_databricks

    require_the_lakes_secret(settings)
    if on_databricks():
        yield
        return
    with write_errors_said(settings, doing or step):
        path = settings.lake_dir / "_locks" / f"{step}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip()
                raise LakeBusy(f"another process{_holder_said(holder)} is running {step} on the lake "
                               f"{settings.lake_dir}: wait for it to end, or point FITBIT_LAKE_DIR at another "
                               f"lake") from None
            except OSError as exc:   # a file system without locks: go on unguarded
                log.warning("no lock for %s on %s (%s): make sure no other process runs it", step, path, exc)
            else:   # for the line a refused process prints
                lock.truncate(0)
                lock.write(str(os.getpid()))
                lock.flush()
            yield


@contextmanager
def writing_every_step(settings: Settings, doing: str):
    """Every step's lock of the lake at once (make vacuum --force, make clean-lake: `doing`): no run,
    stream or producer writes the lake while it is held."""
    with ExitStack() as held:
        for notebook in NOTEBOOKS:   # 01_produce -> produce, ...
            held.enter_context(writing(settings, notebook.split("_", 1)[1], doing))
        yield


def cell_error_line(ename: str, evalue: str) -> str:
    """A failed cell's error on one plain line: its type and the first line of its message (the
    traceback's last line carries IPython's colour codes). For an error py4j passes on from the JVM,
    that first line is only "An error occurred while calling ..."; the Java exception is the next one."""
    lines = [line.strip() for line in (evalue or "").splitlines() if line.strip()]
    if lines and lines[0].endswith("Return Message: Traceback (most recent call last):"):
        # a foreachBatch function's error: py4j's traceback of it, whose own error line is the first
        # one that is not a frame (frames and their source lines are indented)
        raw = evalue.splitlines()
        inner = next((i for i, line in enumerate(raw[1:], 1) if line and not line[0].isspace()), None)
        if inner is not None:
            name, _, message = raw[inner].partition(": ")
            return cell_error_line(name.rsplit(".", 1)[-1], "\n".join([message, *raw[inner + 1:]]))
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling") and lines[1].startswith(":"):
        return f"{ename}: {lines[1].lstrip(': ')}"
    return f"{ename}: {lines[0]}" if lines else ename or "see the notebook"


def counted(count: int, unit: str) -> str:
    """The unit of a step's line as said of `count`: 1 chart, 2 charts (units are plurals)."""
    return re.sub(r"^(\S+?)s\b", r"\1", unit) if count == 1 else unit


def settings_from_params(**params) -> Settings:
    """Settings for a notebook: conf/ + environment, with the notebook's non-empty parameters over them."""
    settings = load_settings()   # first: it checks the log levels below
    logging.basicConfig(level=(os.environ.get("FITBIT_LOG_LEVEL") or "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "mlflow", "alembic", "matplotlib", "traitlets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)   # kafka-python's timing warnings are not for users
    if STEP_WARNINGS not in logging.getLogger("fitbit_lakehouse").handlers:
        logging.getLogger("fitbit_lakehouse").addHandler(STEP_WARNINGS)
    mapping = {**JOB_PARAMETERS, "bronze_trigger": "bronze.trigger", "silver_trigger": "silver.trigger",
               "speed": "producer.speed"}
    return settings.with_overrides(**{mapping.get(k, k): v for k, v in params.items()})


def notebook_settings(**cell_values) -> tuple[Settings, dict]:
    """A notebook's Settings and its step's own arguments, from its parameters: the widgets where
    there are widgets (a Databricks job, `make job`), else the parameters cell's values."""
    params = read_params(**cell_values)
    job_params = {k: v for k, v in params.items() if k in JOB_PARAMETERS}
    return settings_from_params(**job_params), {k: v for k, v in params.items() if k not in JOB_PARAMETERS}


class _StepWarnings(logging.Handler):
    """The pipeline's warnings while a step runs, kept for its report: make run prints them under the
    step's line (a notebook kernel's log lines reach only its notebook)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def take(self) -> list[str]:
        taken, self.messages = self.messages, []
        return taken


STEP_WARNINGS = _StepWarnings()


def _timed_report(settings: Settings, step: str, started: float, payload: dict) -> dict:
    payload = {**payload, "seconds": round(time.monotonic() - started, 1), "warnings": STEP_WARNINGS.take()}
    with write_errors_said(settings, step):
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        (settings.reports_dir / f"{step}.json").write_text(json.dumps(payload, indent=2, default=str))
    return payload


def produce_step(settings: Settings, file_filter: str | None = None, limit: int | None = None,
                 speed: float | None = None, replay: bool = False, synthetic: bool | None = None) -> dict:
    from .kafka_broker import ensure_broker, ensure_topics, refuse_another_lakes_topic
    from .produce import produce_from_settings, require_raw_dir

    started = time.monotonic()
    require_raw_dir(settings, synthetic)   # before a broker is started for nothing
    with writing(settings, "produce"):
        if not ensure_broker(settings).started_here:
            refuse_another_lakes_topic(settings)
        topic_ids = ensure_topics(settings)
        summary = produce_from_settings(settings, file_filter=file_filter, limit=limit, speed=speed,
                                        replay=replay, topic_id=topic_ids.get(settings.events_topic),
                                        synthetic=synthetic)
    print(summary)
    return _timed_report(settings, "produce", started, {**summary.as_dict(), "records": summary.rows,
                                                        "unit": "rows sent"})


def bronze_step(settings: Settings, trigger: str | None = None) -> dict:
    from .bronze import run_bronze
    from .kafka_broker import ensure_broker, ensure_topics
    from .spark import get_spark

    started = time.monotonic()
    with writing(settings, "bronze"):
        ensure_broker(settings)
        topic_ids = ensure_topics(settings)
        result = run_bronze(get_spark(settings), settings, trigger, topic_ids.get(settings.events_topic))
    return _timed_report(settings, "bronze", started, {**result, "unit": "records landed"})


def silver_step(settings: Settings, trigger: str | None = None) -> list[dict]:
    from .silver import run_silver
    from .spark import get_spark

    started = time.monotonic()
    with writing(settings, "silver"):
        result = run_silver(get_spark(settings), settings, trigger)
    _timed_report(settings, "silver", started, {"records": result["records"], "batches": result["batches"],
                                                "unit": "records processed"})
    return result["reconciliation"]


class BadDateRange(ValueError):
    """A backfill's start_date or end_date that is not a date, or a start after the end."""


def date_range(start_date=None, end_date=None) -> tuple:
    """A backfill's range as dates: each a `date` or ISO text ("" or None: open at that end)."""
    from datetime import date

    def parsed(name: str, value):
        if not value or isinstance(value, date):
            return value or None
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            raise BadDateRange(f"{name}={value!r} is not a date: give YYYY-MM-DD, e.g. 2016-04-12") from None

    start, end = parsed("start_date", start_date), parsed("end_date", end_date)
    if start and end and start > end:
        raise BadDateRange(f"start_date {start} is after end_date {end}: there is no day to rebuild")
    return start, end


def gold_step(settings: Settings, start_date=None, end_date=None) -> dict:
    """Gold brought up to date with silver (or, with a start or end date, that range rebuilt: a
    backfill), then new alerts published. Dates are `date`s or ISO text; "" or None = open."""
    start_date, end_date = date_range(start_date, end_date)
    from .alerts import publish_alerts
    from .gold import run_gold
    from .kafka_broker import ensure_broker, ensure_topics
    from .spark import get_spark

    started = time.monotonic()
    with writing(settings, "gold"):
        spark = get_spark(settings)
        result = run_gold(spark, settings, start_date, end_date)
        ensure_broker(settings)
        ensure_topics(settings)
        result["alerts_published"] = publish_alerts(spark, settings)
    return _timed_report(settings, "gold", started, {**result, "records": result["user_days"],
                                                     "unit": "user-days rebuilt"})


def insights_step(settings: Settings) -> dict:
    from .insights import run_insights
    from .spark import get_spark

    started = time.monotonic()
    with writing(settings, "insights"):
        result = run_insights(get_spark(settings), settings)
    unit = "charts, kept (gold unchanged)" if result.get("unchanged") else "charts"
    _timed_report(settings, "insights", started, {"records": len(result["charts"]), "unit": unit,
                                                  "report": result["report"], "html_report": result["html_report"],
                                                  "model": result["model"], "model_skipped": result["model_skipped"]})
    return result


def kernel_settings(job_params: dict | None = None) -> Settings:
    """The settings a run's notebook kernel starts Spark with: the job's parameters over the environment's."""
    return load_settings().with_overrides(**{JOB_PARAMETERS[k]: v for k, v in (job_params or {}).items()})


def warm_up(job_params: dict | None = None) -> None:
    """Start the Spark session ahead of the first step that needs it (errors show up there instead)."""
    from .spark import get_spark

    try:
        get_spark(kernel_settings(job_params))
    except Exception:   # noqa: BLE001 - the step that needs Spark reports the problem
        pass


@dataclass(frozen=True)
class NotebookRun:
    """One notebook to execute; `widgets`, when given, are what `dbutils.widgets` holds for it."""
    name: str
    path: Path
    widgets: dict | None = None


def run_notebooks(settings: Settings, notebooks_dir: Path | None = None, out_dir: Path | None = None) -> None:
    """`make run`: the five notebooks headless, in order, in one kernel, with a broker for the run."""
    notebooks_dir = notebooks_dir or settings.project_root / "notebooks"
    execute_notebooks(settings, [NotebookRun(n, notebooks_dir / f"{n}.ipynb") for n in NOTEBOOKS],
                      out_dir or notebooks_dir / "_executed")


def _synthetic_allowed(settings: Settings, widgets: dict | None) -> bool:
    """Whether an empty raw folder means the synthetic data set: the job's `synthetic` widget decides
    where there is one (the producer job: never unless asked), else conf."""
    from .params import typed_like
    from .produce import synthetic_allowed

    return synthetic_allowed(settings, typed_like((widgets or {}).get("synthetic", ""), None))


def execute_notebooks(settings: Settings, runs: list[NotebookRun], out_dir: Path) -> None:
    """Notebooks headless, in order, in one Jupyter kernel (one Python process, one Spark application),
    with a broker for the run; one line per notebook, then where the results are."""
    logging.getLogger("fitbit_lakehouse").setLevel(logging.WARNING)   # one line per step, printed below
    import nbformat
    from jupyter_client.manager import start_new_kernel
    from nbclient.exceptions import CellExecutionError

    from .catalogue import scan_sources
    from .kafka_broker import ensure_broker, stop_local_broker
    from .produce import require_raw_dir
    from .spark import scratch_root, sweep_scratch

    if any(run.path.stem == NOTEBOOKS[0] and run.widgets is None for run in runs):
        require_raw_dir(settings)   # make run on a mistyped FITBIT_RAW_DIR: said before anything starts
    from .privacy import require_the_lakes_secret

    require_the_lakes_secret(settings)   # FITBIT_USER_KEY_SECRET set after a lake's first run
    if any(run.path.stem == NOTEBOOKS[-1] for run in runs):
        from .insights import require_tracking_server

        require_tracking_server(settings)
    with write_errors_said(settings, "the run"):
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_started = time.monotonic()
    # the broker starts while the kernel does: two processes to wait for, not one after the other
    starter = ThreadPoolExecutor(max_workers=1)
    broker_started = starter.submit(ensure_broker, settings)
    starter.shutdown(wait=False)
    kernel_log = open(settings.reports_dir / "kernel.log", "w")   # the JVM's own output, if any
    kernel = client = handle = None
    # before the kernel starts and claims it: what its Spark will be (the kernel's own lines go to its notebook)
    from .spark_server import plan

    spark_line = plan(settings) if any(run.path.stem != NOTEBOOKS[0] for run in runs) else None
    job_params = {k: v for k, v in (runs[0].widgets or {}).items() if k in JOB_PARAMETERS}
    step = "start-up"   # where a Ctrl-C finds the run
    notebook_runner = _notebook_runner()
    try:
        kernel, client = start_new_kernel(kernel_name="python3", cwd=str(runs[0].path.parent), stdout=kernel_log,
                                          stderr=kernel_log)
        # Spark starts in the kernel while the broker starts and 01_produce runs (it needs no Spark); a
        # run of 01_produce alone (the producer job) starts none
        if any(run.path.stem != NOTEBOOKS[0] for run in runs):
            client.execute("import threading\nfrom fitbit_lakehouse import pipeline as _pipeline\n"
                           f"threading.Thread(target=_pipeline.warm_up, args=({job_params!r},), daemon=True).start()",
                           silent=True)
        handle = broker_started.result()
        print(f"Kafka: {'a local broker started for this run' if handle.started_here else 'the broker'} at "
              f"{handle.bootstrap_servers}", flush=True)
        if spark_line:
            print(f"Spark: {spark_line}", flush=True)
        if any(run.path.stem == NOTEBOOKS[0] for run in runs):
            scan = scan_sources(settings.raw_dir)
            if scan.files:
                print(f"Input: {len(scan.files)} Fitbit CSV files in {settings.raw_dir}", flush=True)
                if scan.outside:
                    print(f"Refused: {len(scan.outside)} link(s) out of the raw folder, not read (e.g. "
                          f"{scan.outside[0].name} -> {scan.outside[0].resolve()}): copy them in", flush=True)
            elif _synthetic_allowed(settings, runs[0].widgets):
                print(f"No Fitbit CSV in {settings.raw_dir}: this run uses a synthetic data set in the Kaggle "
                      f"schema (set FITBIT_RAW_DIR to use real data)", flush=True)
        for run in runs:
            started, step = time.monotonic(), run.name
            _set_widgets(client, run.widgets)
            notebook = nbformat.read(run.path, as_version=4)
            runner = notebook_runner(notebook, km=kernel, timeout=None,
                                     resources={"metadata": {"path": str(run.path.parent)}})
            runner.kc = client
            executed = out_dir / run.path.name
            try:
                runner.execute()
            except CellExecutionError as exc:
                raise StepFailed(f"{run.name} failed ({cell_error_line(exc.ename, exc.evalue)}): see the "
                                 f"executed notebook {executed}") from None
            finally:
                nbformat.write(notebook, executed)
            report = settings.reports_dir / f"{run.path.stem.split('_', 1)[-1]}.json"
            summary = json.loads(report.read_text()) if report.exists() else {}
            records = f"{summary['records']:>12,} {counted(summary['records'], summary.get('unit', ''))}" \
                if "records" in summary else ""
            print(f"{run.name:<12} {records:<36} {time.monotonic() - started:7.1f} s", flush=True)
            for warning in summary.get("warnings") or []:
                print(f"{'':12} warning: {warning}", flush=True)
    except KeyboardInterrupt:
        # the kernel (a session of its own, so Ctrl-C reaches only this process) is stopped below, as a
        # crash would stop it: the lake keeps what its writes committed, and the next run goes on
        raise RunInterrupted(step) from None
    finally:
        if client is not None:
            client.stop_channels()
        if kernel is not None:
            kernel.shutdown_kernel(now=True)
            # its Spark JVM went down with it, before it could delete its scratch files
            sweep_scratch(scratch_root(kernel_settings(job_params)))
        kernel_log.close()
        if handle is None and broker_started.exception() is None:   # the kernel failed to start
            handle = broker_started.result()
        if handle is not None and handle.started_here:
            stop_local_broker(settings)
    print(f"\nDone in {time.monotonic() - run_started:.1f} s.")
    from .gold import GOLD_KEYS
    from .tables import logged_rows

    counts = {name: logged_rows(str(settings.lake_dir / "gold" / name)) for name in GOLD_KEYS}
    if any(v is not None for v in counts.values()):
        print("  Gold rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v is not None))
    print(f"  Delta tables:       {settings.lake_dir}/bronze, silver, gold")
    print(f"  Reports and charts: {settings.reports_dir}")
    print(f"  Executed notebooks: {out_dir}")
    print(f"  MLflow:             {masked(settings.mlflow_tracking_uri)}")


def _notebook_runner():
    """nbclient's runner for a kernel and client it is given, without the Ctrl-C handler nbclient adds
    while it runs (that handler shuts the kernel down and lets the run go on to the next notebook:
    "IOPub channel must be running"); here Ctrl-C stops the run. Built on use: nbclient is imported
    only by the runs of notebooks."""
    from contextlib import asynccontextmanager

    from nbclient import NotebookClient

    class NotebookRunner(NotebookClient):
        @asynccontextmanager
        async def async_setup_kernel(self, **kwargs):
            yield

    return NotebookRunner


def _set_widgets(client, widgets: dict | None) -> None:
    """Define `dbutils` in the kernel with these widget values (None: no dbutils, as in JupyterLab)."""
    code = ("from fitbit_lakehouse.params import LocalDbutils\n"
            f"dbutils = LocalDbutils({ {k: '' if v is None else str(v) for k, v in widgets.items()}!r})"
            if widgets is not None
            else "globals().pop('dbutils', None)")
    reply = client.execute_interactive(code, silent=True, timeout=60)
    if reply["content"]["status"] != "ok":
        raise StepFailed(f"could not set the notebook's widgets: {reply['content'].get('evalue')}")


def stream(settings: Settings) -> None:
    """`make stream`: bronze, silver and gold (with alerts) as continuous queries until Ctrl-C.
    Gold follows silver: each silver micro-batch (a row in silver's ingest log) triggers an
    incremental gold update of the user-days it changed, then publishes new alerts."""
    with ExitStack() as held:
        for step in ("bronze", "silver", "gold"):
            held.enter_context(writing(settings, step))
        with write_errors_said(settings, "the stream"):   # whichever query found it full
            _stream(settings)


def _stream(settings: Settings) -> None:
    from .alerts import publish_alerts
    from pyspark.errors import StreamingQueryException

    from .bronze import BRONZE_EVENTS, hit_kafka_metrics_bug, start_bronze
    from .gold import run_gold
    from .kafka_broker import ensure_broker, ensure_topics
    from .silver import IDENTITY, INGEST_LOG, INGEST_LOG_SCHEMA, create_quarantine, start_silver
    from .spark import claim_scratch, get_spark, trigger_of
    from .tables import Lake

    settings = settings.with_overrides(**(settings.get("stream.settings") or {}))   # a stream's batch bounds
    broker = ensure_broker(settings)
    topic_id = ensure_topics(settings).get(settings.events_topic)
    spark = get_spark(settings)
    for key, value in (settings.get("stream.delta_conf") or {}).items():   # auto compaction
        spark.conf.set(key, str(value))
    lake = Lake(spark, settings)
    lake.create("silver", INGEST_LOG, spark.createDataFrame([], INGEST_LOG_SCHEMA).schema)

    def bring_gold_up_to_date(session) -> None:
        run_gold(session, settings)
        publish_alerts(session, settings)

    def update_gold(batch, batch_id):
        if not batch.isEmpty():   # empty: the ingest log's own creation, silver has written nothing yet
            bring_gold_up_to_date(batch.sparkSession)

    if lake.exists("silver", IDENTITY):   # first what batch runs left, and kpi.* changed: not at the next record
        bring_gold_up_to_date(spark)
    # Gold's query only says that silver wrote a batch (run_gold finds what changed from silver's own
    # versions), so it starts at the log's current version (included: its first batch may find nothing
    # new; "latest" could miss a silver batch written before the query first looks) with a checkpoint in
    # this process's scratch dir: none in the lake lags behind batch runs and holds the log's old files
    # from make vacuum.
    shutil.rmtree(lake.checkpoint("gold", settings.get("gold.query_name")), ignore_errors=True)   # an earlier version's
    gold = (lake.read_stream("silver", INGEST_LOG, startingVersion=lake.version("silver", INGEST_LOG))
            .writeStream.queryName(settings.get("gold.query_name"))
            .foreachBatch(update_gold)
            .option("checkpointLocation", str(claim_scratch(settings) / "gold-trigger"))
            .trigger(**trigger_of(settings, "gold", "processingTime")).start())
    bronze = start_bronze(spark, settings, "processingTime", topic_id)
    create_quarantine(lake)   # before silver's first micro-batch, which may write it
    queries = [bronze, start_silver(spark, settings, "processingTime"), gold]
    # Ctrl-C only asks to stop: PySpark's own handler calls the JVM from inside the call this thread
    # is waiting in (py4j "reentrant call" tracebacks) and cancels the micro-batches being written
    stop_asked = threading.Event()
    previous_handler = signal.signal(signal.SIGINT, lambda *_: stop_asked.set())
    print("Streaming bronze, silver and gold (with goal alerts); Ctrl-C stops.", flush=True)
    status_every_s, since = float(settings.get("stream.status_every_s") or 0), {}
    next_status = time.monotonic() + status_every_s
    try:
        while not stop_asked.is_set():
            try:
                if spark.streams.awaitAnyTermination(timeout=1):
                    break
            except StreamingQueryException as exc:
                if queries[0].isActive or not hit_kafka_metrics_bug(exc):
                    raise
                log.warning("bronze: the batch left by a crash is done; starting the query again (SPARK-57438)")
                spark.streams.resetTerminated()
                queries[0] = start_bronze(spark, settings, "processingTime", topic_id)
            if status_every_s and time.monotonic() >= next_status:
                progress = {name: [json.loads(p.json) for p in query.recentProgress]
                            for name, query in zip(("bronze", "silver", "gold"), queries)}
                read_versions = {"silver": lake.version("bronze", BRONZE_EVENTS),
                                 "gold": lake.version("silver", INGEST_LOG)}
                line, since = stream_status(progress, since, read_versions)
                print(line, flush=True)
                next_status = time.monotonic() + status_every_s
    finally:
        if stop_asked.is_set():
            print("Stopping: each query after the micro-batch it is in.", flush=True)
        _stop_between_batches(queries, float(settings.get("stream.stop_wait_s")))
        signal.signal(signal.SIGINT, previous_handler)
        if broker.started_here:   # a producer in another terminal may still be sending to it
            print(f"The Kafka broker this stream started is still running at {broker.bootstrap_servers}, with "
                  f"what was sent: make kafka-down stops it.", flush=True)


def stream_status(progress: dict[str, list[dict]], since: dict[str, str] | None = None,
                  read_versions: dict[str, int | None] | None = None) -> tuple[str, dict[str, str]]:
    """One line on what the queries of `make stream` (bronze, silver, gold: their recent progress
    updates, as JSON) took since `since` (per query, the newest progress timestamp of the last line)
    and what still waits for them (read_versions: the latest version of the Delta table a query reads);
    and the newest timestamps, for the next line. A stream that falls behind shows it here: what waits
    grows from line to line. Per query, because a timestamp is when a micro-batch began: a long one is
    reported after other queries' later ones."""
    took, waiting, newest = [], [], dict(since or {})
    for name, updates in progress.items():
        new = [p for p in updates if p["timestamp"] > newest.get(name, "") and int(p["numInputRows"]) > 0]
        newest[name] = max([newest.get(name, ""), *(p["timestamp"] for p in updates)])
        rows = sum(int(p["numInputRows"]) for p in new)
        took.append(f"{name} {_count(len(new), 'update')}" if name == "gold" else   # its input: ingest-log rows
                    f"{name} {_count(rows, 'message' if name == 'bronze' else 'record')} in "
                    f"{_count(len(new), 'micro-batch')}")
        source = (updates[-1].get("sources") or [{}])[0] if updates else {}
        if source.get("description", "").startswith("Kafka"):   # messages not read yet
            latest, end = (_json_of(source.get(key)) for key in ("latestOffset", "endOffset"))
            behind = sum(int(offset) - int(end.get(topic, {}).get(partition, 0))
                         for topic, partitions in latest.items() for partition, offset in partitions.items())
            waiting.append(f"{_count(behind, 'message')} in Kafka")
        elif source and (read_versions or {}).get(name) is not None:   # Delta: commits not read yet
            end = _json_of(source.get("endOffset"))
            partly = end.get("index", -1) != -1   # within a version (a first snapshot): it is not done
            behind = max(0, read_versions[name] - end.get("reservoirVersion", -1)) + partly
            waiting.append(f"{_count(behind, 'commit')} for {name}")
    return f"stream: {', '.join(took)}; waiting: {', '.join(waiting) or 'nothing'}", newest


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("h") else "s")


def _json_of(value) -> dict:
    """An offset of a progress update: JSON in the JVM's progress, text where Python renders it."""
    return value if isinstance(value, dict) else json.loads(value or "{}")


def _stop_between_batches(queries, wait_s: float) -> None:
    """Stop each query (in order: what bronze lands, silver may still take) when no micro-batch of
    it is running, waiting up to wait_s for the one it is in. A batch stopped midway is safe (it is
    done again at the next start) but logs the cancelled writes."""
    for query in queries:
        deadline = time.monotonic() + wait_s
        while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.1)
        query.stop()
