"""A kept Spark JVM (`make spark-up`): runs, notebook kernels and the CLI attach to it instead of each
starting a JVM of its own, as the runs of a Databricks job share a cluster that is already up.

A run on a fresh JVM pays for its start and for the JIT's warm-up on every call; attached to a kept
JVM it starts a new SparkContext in a JVM whose code is already compiled. The kept JVM is PySpark's
own gateway (launched as PySpark launches it), held open by a small Python process; a run attaches
through PySpark's PYSPARK_GATEWAY_PORT / PYSPARK_GATEWAY_SECRET.

One run at a time: a run holds the lock file while attached (the system drops it when the run's
process ends, however it ends). A second run while one is attached, a kept JVM that is gone, or one
started with other jars or JVM options: the run starts its own JVM, after one line that says why.
The keeper stops the SparkContext a run left behind (a kernel shut down, a run killed) once its lock
is free, so the next run starts on a clean JVM.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .config import Settings
from .maven import SetupError

log = logging.getLogger(__name__)

_MARKER = "fitbit_lakehouse spark serve"
_claimed_lock = None   # the open lock file of this process, while it is attached


def _home(settings: Settings) -> Path:
    return settings.project_root / settings.get("spark.kept_jvm.dir")   # an absolute dir stays as it is


def _java_tmp(home: Path) -> Path:
    """The kept JVM's temp dir (what it unpacks, its own temp dirs), cleared at each start."""
    return home / "tmp"


def _files(settings: Settings | Path) -> tuple[Path, Path, Path, Path]:
    """(pid file, gateway file, lock file, log file) of the keeper's directory"""
    home = settings if isinstance(settings, Path) else _home(settings)
    return home / "pid", home / "gateway.json", home / "lock", home / "server.log"


def _jvm_conf(settings: Settings) -> dict[str, str]:
    """What a Spark JVM is launched with and keeps for its life: jars, heap, JVM options (a run's own
    Spark settings, such as its lake, go to its SparkContext instead)."""
    from .spark import extra_jars, java_options_text, jvm_options

    return {"spark.jars": ",".join(extra_jars(settings, resolve_missing=False)),
            "spark.driver.memory": str(settings.get("spark.driver_memory")),
            "spark.driver.extraJavaOptions": java_options_text([*jvm_options(settings),
                                                                f"-Djava.io.tmpdir={_java_tmp(_home(settings))}"])}


def _fingerprint(settings: Settings) -> str:
    from .spark import java_version_text

    text = json.dumps([_jvm_conf(settings), java_version_text(os.environ.get("JAVA_HOME")),
                       os.environ.get("SPARK_SUBMIT_OPTS", "")])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def running_pid(settings: Settings) -> int | None:
    from .cluster import _running

    return _running(_files(settings)[0], _MARKER)


# --- the keeper process ------------------------------------------------------------------

def start(settings: Settings) -> tuple[int, bool]:
    """`make spark-up`: (pid of the keeper, whether it was started now)."""
    from .spark import require_java

    pid = running_pid(settings)
    if pid is not None:
        return pid, False
    require_java()
    pid_file, gateway_file, _, log_file = _files(settings)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    gateway_file.unlink(missing_ok=True)
    # what the keeper launches, decided here (the jars must be resolved: make setup; else one line here)
    (pid_file.parent / "launch.json").write_text(json.dumps({
        "conf": _jvm_conf(settings), "fingerprint": _fingerprint(settings), "poll_s": settings.get("spark.kept_jvm.poll_s")}))
    with open(log_file, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", "spark", "serve", "--dir",
                                 str(pid_file.parent)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=settings.project_root)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + settings.get("spark.kept_jvm.startup_timeout_s")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise SetupError(f"The kept Spark JVM exited at start (code {proc.returncode}); see {log_file}.")
        if gateway_file.is_file():
            return proc.pid, True
        time.sleep(0.2)
    stop(settings)
    raise SetupError(f"The kept Spark JVM did not start within "
                     f"{settings.get('spark.kept_jvm.startup_timeout_s')} s; see {log_file}.")


def stop(settings: Settings) -> bool:
    """`make spark-down`: stop the keeper (its JVM ends with it). False when none was running."""
    from .cluster import _stop

    pid_file, gateway_file, _, _ = _files(settings)
    stopped = _stop(pid_file, _MARKER, timeout_s=60)
    gateway_file.unlink(missing_ok=True)
    return stopped


def serve(home: Path) -> None:
    """The keeper's body (`python -m fitbit_lakehouse spark serve --dir ...`): launch the JVM that
    `start` described, publish where it listens, stop what dead runs left in it, end it on SIGTERM."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    _, gateway_file, lock_file, _ = _files(home)
    launch = json.loads((home / "launch.json").read_text())
    shutil.rmtree(_java_tmp(home), ignore_errors=True)   # what a killed kept JVM left
    _java_tmp(home).mkdir()
    conf = SparkConf(loadDefaults=False)
    for key, value in launch["conf"].items():
        conf.set(key, value)
    gateway = launch_gateway(conf)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    secret_file = gateway_file.with_suffix(".tmp")
    secret_file.unlink(missing_ok=True)   # one a killed keeper left may have other permissions
    secret_file.touch(mode=0o600)   # the secret lets a process drive the JVM: this user only
    secret_file.write_text(json.dumps({"port": gateway.java_parameters.port, "secret": gateway.java_parameters.auth_token,
                                       "fingerprint": launch["fingerprint"], "jvm_pid": gateway.proc.pid}))
    secret_file.replace(gateway_file)
    print(f"kept Spark JVM pid {gateway.proc.pid} listening on 127.0.0.1:{gateway.java_parameters.port}", flush=True)
    try:
        while not stopping and gateway.proc.poll() is None:
            _stop_orphaned_context(gateway, lock_file)
            time.sleep(launch["poll_s"])
    finally:
        gateway_file.unlink(missing_ok=True)
        gateway.proc.stdin.close()   # PySpark's gateway ends when its stdin closes
        try:
            gateway.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.proc.kill()


def _active_context(jvm):
    """The JVM's active SparkContext, or None (a Scala object's method, reached through MODULE$)."""
    active = getattr(getattr(jvm.org.apache.spark, "SparkContext$"), "MODULE$").getActive()
    return active.get() if active.isDefined() else None


def _stop_orphaned_context(gateway, lock_file: Path) -> None:
    """A SparkContext whose run has ended without stopping it (the lock is free) is stopped."""
    with open(lock_file, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return   # a run is attached
        context = _active_context(gateway.jvm)
        if context is not None:
            print("stopping the SparkContext of a run that has ended", flush=True)
            context.stop()


# --- attaching -----------------------------------------------------------------------------

_GONE = ("The kept Spark JVM (make spark-up) is no longer running: this run starts its own (make spark-up "
         "starts a new one).")
_OTHER = ("The kept Spark JVM was started with other jars or JVM options: this run starts its own (make "
          "spark-down spark-up restarts it with these).")
_BUSY = "The kept Spark JVM is busy with another run: this run starts its own."


def _usable_gateway(settings: Settings) -> tuple[dict | None, str | None]:
    """The kept JVM's address when runs of these settings may use it; else None and why not (None when
    there is simply no kept JVM, or runs are told to ignore it)."""
    if str(settings.get("spark.kept_jvm.attach")).lower() in ("false", "off", "no", "0"):
        return None, None
    gateway_file = _files(settings)[1]
    if not gateway_file.is_file():
        return None, None
    if running_pid(settings) is None:
        gateway_file.unlink(missing_ok=True)
        return None, _GONE
    gateway = json.loads(gateway_file.read_text())
    if gateway["fingerprint"] != _fingerprint(settings):
        return None, _OTHER
    return gateway, None


def _claim(settings: Settings):
    """The lock file, locked for this process (the keeper may hold it a moment); None when a run holds it."""
    lock = open(_files(settings)[2], "a")
    deadline = time.monotonic() + settings.get("spark.kept_jvm.claim_timeout_s")
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                return None
            time.sleep(0.2)


def plan(settings: Settings) -> str | None:
    """For `make run`'s console: where the run's Spark will be, when a kept JVM is involved."""
    gateway, why_not = _usable_gateway(settings)
    if gateway is None:
        return why_not
    lock = _claim(settings)
    if lock is None:
        return _BUSY
    lock.close()
    return f"the kept JVM of make spark-up (pid {gateway['jvm_pid']})"


def attach(settings: Settings) -> bool:
    """Point this process's PySpark at the kept JVM, if one is up, fits and is free; True when it does.
    Call before the process's first SparkContext."""
    global _claimed_lock
    if _claimed_lock is not None:
        return True
    gateway, why_not = _usable_gateway(settings)
    if gateway is None:
        if why_not:
            log.warning(why_not)
        return False
    lock = _claim(settings)
    if lock is None:
        log.warning(_BUSY)
        return False
    from pyspark import SparkContext

    # the variables only for this connection: a process this one starts must not attach unlocked
    os.environ.update(PYSPARK_GATEWAY_PORT=str(gateway["port"]), PYSPARK_GATEWAY_SECRET=gateway["secret"])
    try:
        SparkContext._ensure_initialized()
        # py4j numbers the Python objects it hands the JVM p0, p1, ... in every process, and the JVM's
        # garbage collector later tells "the" Python side to drop an id: the id of an earlier run's object
        # would drop this run's (silver's foreachBatch: "Object ID unknown"). Ids from a random start
        # cannot meet an earlier run's.
        SparkContext._gateway.gateway_property.pool.next_id = int.from_bytes(os.urandom(6), "big")
        leftover = _active_context(SparkContext._jvm)
        if leftover is not None:   # a run that ended before the keeper's next look
            leftover.stop()
        # tables of an earlier run may have been deleted and created again at the same path since
        SparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    except Exception as exc:   # noqa: BLE001 - the run goes on, on a JVM of its own
        SparkContext._gateway = SparkContext._jvm = None
        lock.close()
        log.warning("The kept Spark JVM did not answer (%s): this run starts its own.", str(exc).splitlines()[0][:200])
        return False
    finally:
        os.environ.pop("PYSPARK_GATEWAY_PORT", None)
        os.environ.pop("PYSPARK_GATEWAY_SECRET", None)
    _claimed_lock = lock
    log.info("attached to the kept Spark JVM (pid %s)", gateway["jvm_pid"])
    return True
