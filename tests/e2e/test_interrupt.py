"""Ctrl-C during `make run`: one line that says where it stopped, exit code 130, no traceback, and the
notebook kernel, its Spark JVM and the broker the run started gone with the run (a later run goes on
from what was committed: the crash tests cover that). SIGTERM (a scheduler's timeout, `kill`) does
what Ctrl-C does: the run is stopped with it here, a CLI step with Ctrl-C. So does a terminal that
closes under a run (SIGHUP, on a real pseudo-terminal)."""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import MONTH2_SLICE

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    parents = {}
    for line in subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        child, parent = (int(v) for v in line.split())
        parents[child] = parent
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"   # a zombie has ended
    except FileNotFoundError:
        return False


def _interrupt_once(command: list[str], env: dict, ready, ready_within: float, exit_within: float,
                    sig: int = signal.SIGINT):
    """Start `python -m fitbit_lakehouse <command>` in a session of its own and send sig to its whole
    process group once ready(output so far) holds, as a terminal's Ctrl-C (SIGINT) and `timeout` or a
    service manager (SIGTERM) do. Returns its exit code, its output and the processes it had started."""
    proc = subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", *command], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + ready_within
        while not ready(output):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        started = _descendants(proc.pid)
        os.killpg(proc.pid, sig)
        code = proc.wait(exit_within)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)   # the reader thread takes the last lines
    return code, output, started


def _run_env(tmp_path) -> dict:
    """A `make run` of two slice files on a lake of its own. Nothing answers at its broker address: the
    run starts a broker of its own, which must stop with it."""
    from fitbit_lakehouse.kafka_broker import free_port

    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("dailyActivity_merged.csv", "hourlySteps_merged.csv"):
        shutil.copy(MONTH2_SLICE / name, raw / name)
    return dict(os.environ, FITBIT_LAKE_DIR=str(tmp_path / "lake"), FITBIT_RAW_DIR=str(raw),
                KAFKA_BOOTSTRAP_SERVERS=f"localhost:{free_port()}", FITBIT_USER_KEY_SECRET="interrupt-test-secret",
                FITBIT_SETTINGS=json.dumps({"spark.shuffle_partitions": 2}))


def _all_ended(pids) -> list[int]:
    """Those of pids still running after up to 20 s."""
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if _alive(pid)]


def test_sigterm_stops_the_run_in_one_line_and_leaves_nothing_running(tmp_path):
    env = _run_env(tmp_path)
    # stopped in the step after 01_produce: the notebook kernel, its Spark JVM and the broker are running
    code, output, started = _interrupt_once(
        ["run"], env, lambda output: any(line.startswith("01_produce") for line in output), 180, 60, signal.SIGTERM)
    assert any("a local broker started for this run" in line for line in output), "".join(output)
    assert len(started) >= 2, "the run has no kernel or no broker"
    assert code == 130, "".join(output)
    stops = [line for line in output if line.startswith("interrupted")]
    assert len(stops) == 1 and re.match(r"interrupted during 0[2-5]_\w+: .*goes on", stops[0]), "".join(output)
    assert not any("Traceback" in line or "Error" in line for line in output), "".join(output)
    left = _all_ended(started)
    assert not left, f"still running after the run: {left}"


# the run's process made a session leader with the pseudo-terminal as its controlling terminal, as a
# shell in a terminal window or an ssh session starts it, then replaced by the command (same process)
_IN_A_TERMINAL = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def test_a_terminal_closed_under_the_run_stops_it_and_leaves_nothing_running(tmp_path):
    """An ssh session that drops or a terminal window shut: the run gets SIGHUP, and from then on its
    writes to the terminal fail. It must stop as on Ctrl-C all the same, with the kernel, its Spark JVM
    and the broker it started; Python's default would end it at once and leave the broker running."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", _IN_A_TERMINAL, "-m", "fitbit_lakehouse", "run"],
                            env=_run_env(tmp_path), stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output, deadline = b"", time.monotonic() + 180
    try:
        while b"01_produce" not in output:   # read here, not in a thread: a read in progress would hold it open
            assert proc.poll() is None and time.monotonic() < deadline, output.decode()
            if select.select([controller], [], [], 0.5)[0]:
                output += os.read(controller, 4096)
        started = _descendants(proc.pid)   # the notebook kernel, its Spark JVM, the broker
    finally:
        os.close(controller)   # the terminal hangs up: SIGHUP to the run, and its writes there fail
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"a local broker started for this run" in output, output.decode()
    assert len(started) >= 2, "the run has no kernel or no broker"
    assert code == 130, f"ended with {code}, not as on Ctrl-C"
    left = _all_ended(started)
    assert not left, f"still running after the terminal closed: {left}"


def test_ctrl_c_of_a_cli_step_ends_it_at_once_in_one_line(base_settings, broker, tmp_path):
    """`python -m fitbit_lakehouse steps ...` interrupted while its Spark runs: no py4j or JVM traceback
    (PySpark's own handler calls the JVM from inside a JVM call), its Spark JVM ended with it."""
    from fitbit_lakehouse import pipeline

    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(MONTH2_SLICE / "hourlySteps_merged.csv", raw / "hourlySteps_merged.csv")
    overrides = {"kafka.events_topic": "e2e_interrupt_steps", "kafka.alerts_topic": "e2e_interrupt_steps_alerts",
                 "spark.shuffle_partitions": 2, "bronze.max_offsets_per_trigger": 1}   # many small batches
    settings = base_settings.with_overrides(**{"paths.raw_dir": str(raw), "paths.lake_dir": str(tmp_path / "lake"),
                                               "kafka.bootstrap_servers": broker.bootstrap_servers,
                                               "producer.records_per_message": 5, **overrides})
    pipeline.produce_step(settings)
    env = dict(os.environ, FITBIT_LAKE_DIR=str(tmp_path / "lake"), FITBIT_RAW_DIR=str(raw),
               KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, FITBIT_SETTINGS=json.dumps(overrides))
    bronze_log = tmp_path / "lake" / "bronze" / "events" / "_delta_log"   # there once bronze is writing
    code, output, started = _interrupt_once(["steps", "bronze,silver"], env, lambda _: bronze_log.is_dir(), 120, 30)
    assert started   # its Spark JVM
    assert code == 130, "".join(output)
    assert output == ["interrupted: what was committed is kept, and the next run goes on from there\n"], "".join(output)
    assert not [pid for pid in started if _alive(pid)]
