"""The one line `make run` prints when a notebook cell fails: plain text, the error's type and message;
and SIGTERM taken as Ctrl-C."""
from __future__ import annotations

import signal

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from fitbit_lakehouse.pipeline import cell_error_line


def test_a_failed_cell_is_one_plain_line_from_a_real_kernel():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "raise RuntimeError('Java gateway exited\\nwhile starting')")])
    with pytest.raises(CellExecutionError) as err:
        NotebookClient(notebook, kernel_name="python3", timeout=60).execute()
    # the kernel's traceback carries IPython's colour codes; the line is built from the error's type and value
    assert cell_error_line(err.value.ename, err.value.evalue) == "RuntimeError: Java gateway exited"


def test_a_java_error_names_the_java_exception(spark):
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError) as err:
        spark.sparkContext._jvm.java.lang.Class.forName("no.such.Klass")   # an error PySpark does not convert
    line = cell_error_line(type(err.value).__name__, str(err.value))   # what ipykernel sends as evalue
    assert line == "Py4JJavaError: java.lang.ClassNotFoundException: no.such.Klass"


def test_an_error_in_a_foreach_batch_function_names_the_error_inside():
    """A streaming query whose foreachBatch function failed: its first line ends where py4j's
    traceback of that function begins; the error inside is the line after the frames."""
    evalue = "\n".join([
        "[STREAM_FAILED] Query [id = f2, runId = da] terminated with exception: [FOREACH_BATCH_USER_FUNCTION_ERROR]"
        " An error occurred in the user provided function in foreach batch sink. Reason: An exception was raised"
        " by the Python Proxy. Return Message: Traceback (most recent call last):",
        '  File "/venv/lib/python3.11/site-packages/py4j/clientserver.py", line 644, in _call_proxy',
        "    return_value = getattr(self.pool[obj_id], method)(*params)",
        '  File "/venv/lib/python3.11/site-packages/py4j/protocol.py", line 327, in get_return_value',
        "    raise Py4JJavaError(",
        "py4j.protocol.Py4JJavaError: An error occurred while calling o4751.save.",
        ": org.apache.spark.SparkException: Job aborted due to stage failure: java.io.IOException: No space left",
        "\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)"])
    assert cell_error_line("StreamingQueryException", evalue) == (
        "Py4JJavaError: org.apache.spark.SparkException: Job aborted due to stage failure: java.io.IOException: "
        "No space left")
    inner_python_error = evalue.split("\npy4j.protocol")[0] + "\nKeyError: 'Id'"
    assert cell_error_line("StreamingQueryException", inner_python_error) == "KeyError: 'Id'"


def test_a_full_disk_is_known_by_its_errno_or_by_its_words_in_a_cause():
    import errno

    from fitbit_lakehouse.pipeline import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    try:
        try:
            raise OSError("java.io.IOException: No space left on device")
        except OSError as cause:
            raise RuntimeError("[TASK_WRITE_FAILED] Task failed while writing rows") from cause
    except RuntimeError as exc:
        assert is_disk_full(exc)
    assert is_disk_full(RuntimeError("sqlite3.OperationalError: database or disk is full"))   # MLflow's store
    assert not is_disk_full(RuntimeError("Task failed while writing rows"))


def test_a_full_disk_says_where_and_what_to_do(base_settings, tmp_path):
    from fitbit_lakehouse.pipeline import DiskFull, write_errors_said

    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake"),
                                               "spark.scratch_dir": str(tmp_path / "scratch")})
    with pytest.raises(DiskFull) as failure:
        with write_errors_said(settings, "silver"):
            raise OSError(28, "No space left on device")
    said = str(failure.value)
    assert said.startswith(f"silver stopped: no space left on the disk of the lake {tmp_path / 'lake'} or of "
                           f"Spark's scratch dir {tmp_path / 'scratch'}. Free space there"), said
    assert "\n" not in said and "next run goes on" in said
    with pytest.raises(ValueError):   # any other error goes through as it is
        with write_errors_said(settings, "silver"):
            raise ValueError("not a disk")


def test_a_folder_the_user_may_not_write_says_which_and_what_to_do(base_settings, tmp_path):
    from fitbit_lakehouse.pipeline import NotWritable, write_errors_said

    settings = base_settings.with_overrides(**{"paths.lake_dir": "/srv/lake"})
    with pytest.raises(NotWritable) as failure:
        with write_errors_said(settings, "produce"):
            raise PermissionError(13, "Permission denied", "/srv/lake/_locks")
    assert str(failure.value) == ("produce cannot write /srv/lake/_locks (Permission denied): give this user the "
                                  "right to write there, or point FITBIT_LAKE_DIR at a folder it can write")
    for outside in (PermissionError(13, "Permission denied", "/data/raw/dailyActivity_merged.csv"),   # a read
                    PermissionError("operation not permitted")):   # no file named
        with pytest.raises(PermissionError):   # not said as the lake's
            with write_errors_said(settings, "produce"):
                raise outside


def test_a_local_broker_that_stopped_on_a_full_disk_says_so(base_settings, tmp_path):
    """Kafka stops once its only log dir fails; the producer then only sees its sends time out."""
    from fitbit_lakehouse.kafka_broker import LocalBroker

    broker = LocalBroker(base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")}))
    broker.home.mkdir(parents=True)
    assert broker.why_it_stopped() is None   # never started
    broker.pid_file.write_text("999999999")   # above any pid: no such process runs
    broker.log_file.write_text("[2026-12-05] INFO started (kafka.server.KafkaRaftServer)\n"
                               "[2026-12-05] ERROR Error while appending records to events-1 in dir /lake/kafka/data\n"
                               "java.io.IOException: No space left on device\n"
                               "\tat java.base/sun.nio.ch.FileDispatcherImpl.write0(Native Method) ~[?:?]\n")
    assert broker.why_it_stopped() == "java.io.IOException: No space left on device"
    broker.log_file.write_text("[2026-12-05] INFO Kafka Server started (kafka.server.KafkaRaftServer)\n")
    assert broker.why_it_stopped() is None   # stopped for another reason


def test_an_error_without_a_message():
    assert cell_error_line("KeyboardInterrupt", "") == "KeyboardInterrupt"


def test_sigterm_does_what_ctrl_c_does_whatever_handles_ctrl_c():
    from fitbit_lakehouse.__main__ import as_ctrl_c

    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))   # e.g. make stream's
    try:
        as_ctrl_c(signal.SIGTERM, None)
        assert calls == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a job started in the background ignores Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            as_ctrl_c(signal.SIGTERM, None)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            as_ctrl_c(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("count, unit, said", [
    (1, "charts", "chart"), (4, "charts", "charts"), (1, "charts, kept (gold unchanged)", "chart, kept (gold unchanged)"),
    (1, "user-days rebuilt", "user-day rebuilt"), (0, "rows sent", "rows sent"), (1, "records landed", "record landed"),
])
def test_a_steps_line_says_one_chart_not_one_charts(count, unit, said):
    from fitbit_lakehouse.pipeline import counted

    assert counted(count, unit) == said


def test_the_jvms_start_notice_is_kept_off_stderr_and_two_threads_starting_spark_leave_it_whole(capfd):
    """What a process started while Spark starts writes to stderr passes through, but for the JVM's notice
    of its incubator module. make run starts Spark in a thread while 02_bronze may ask for it too: both
    threads swap fd 2 in turn, and it ends where it was (it once ended closed, or on a pipe)."""
    import os
    import subprocess
    import threading
    import time

    from fitbit_lakehouse.spark import _jvm_start_notices_dropped

    console = os.fstat(2)
    builder = threading.Lock()   # SparkSession.builder's own lock
    jvm = ("echo 'WARNING: Using incubator modules: jdk.incubator.vector' >&2; "
           "echo 'a line of the JVM' >&2; printf 'and its last words' >&2")
    children = []

    def start_spark(seconds: float) -> None:
        with _jvm_start_notices_dropped(), builder:
            children.append(subprocess.Popen(["sh", "-c", jvm]))
            time.sleep(seconds)

    threads = [threading.Thread(target=start_spark, args=(0.5,)), threading.Thread(target=start_spark, args=(0.1,))]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    for child in children:
        child.wait()
    deadline = time.monotonic() + 10
    while any(t.name == "jvm-stderr" and t.is_alive() for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (console.st_dev, console.st_ino)
    err = capfd.readouterr().err
    assert err.count("a line of the JVM\n") == 2 and err.count("and its last words") == 2, err
    assert "incubator" not in err


def test_a_changed_validation_rule_is_said_once_and_reaches_make_runs_console(base_settings, tmp_path):
    """Rules apply to records as they arrive: a limit changed since silver last ran is said once, with
    what changed, and the step's report carries it, which make run prints under the step's line (a
    notebook kernel's log lines reach only its notebook)."""
    import json

    from fitbit_lakehouse.pipeline import STEP_WARNINGS, _timed_report, settings_from_params
    from fitbit_lakehouse.silver import note_the_rules

    settings_from_params()   # what each notebook does first: the step's warnings are kept from then on
    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")})
    stricter = settings.with_overrides(**{"validation.rules.heart_rate_out_of_range.max": 100})
    STEP_WARNINGS.take()
    note_the_rules(settings)   # a lake's first silver run: nothing to compare with
    note_the_rules(settings)
    assert _timed_report(settings, "silver", 0.0, {"records": 0})["warnings"] == []
    note_the_rules(stricter)
    note_the_rules(stricter)   # said once
    report = _timed_report(settings, "silver", 0.0, {"records": 0})
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith(
        "silver: validation rules changed since silver last ran (validation.rules.heart_rate_out_of_range.max: "
        f"{settings.get('validation.rules.heart_rate_out_of_range.max')} -> 100): they apply to records from now on")
    assert json.loads((settings.reports_dir / "silver.json").read_text())["warnings"] == report["warnings"]
    assert _timed_report(settings, "silver", 0.0, {"records": 0})["warnings"] == []   # taken once
