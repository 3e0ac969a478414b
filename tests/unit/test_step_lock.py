"""One process per step and lake: a second process is refused that step with one line (other steps stay
free), and the lock goes with its holder, however that ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from fitbit_lakehouse import pipeline

HOLD = """
import sys
from fitbit_lakehouse import pipeline
from fitbit_lakehouse.config import load_settings
with pipeline.writing(load_settings(), sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()   # until the test closes stdin or kills this process
"""


@pytest.fixture
def lake(base_settings, tmp_path):
    # nothing answers at the broker address: a step that got past its lock would fail on the broker instead
    return base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake"),
                                           "kafka.bootstrap_servers": "localhost:1",
                                           "kafka.start_local_broker": False})


def _env(settings) -> dict:
    return dict(os.environ, FITBIT_LAKE_DIR=str(settings.lake_dir), KAFKA_BOOTSTRAP_SERVERS="localhost:1",
                FITBIT_SETTINGS='{"kafka.start_local_broker": false}')


def _holder(settings, step: str) -> subprocess.Popen:
    """Another process that runs `step` on the lake until it is told to stop."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, step], env=_env(settings), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_step_another_process_runs_is_refused_until_that_process_is_killed(lake):
    holder = _holder(lake, "bronze")
    try:
        with pytest.raises(pipeline.LakeBusy, match=f"pid {holder.pid}.* running bronze on the lake"):
            pipeline.bronze_step(lake)
        with pipeline.writing(lake, "silver"):   # the other steps are free, as under make stream + produce
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with pipeline.writing(lake, "bronze"):   # a process killed with -9 holds nothing: this one has it now
        refused = subprocess.run([sys.executable, "-c", HOLD, "bronze"], env=_env(lake), capture_output=True,
                                 text=True, timeout=60)
    assert refused.returncode != 0 and f"(pid {os.getpid()}) is running bronze" in refused.stderr


def test_the_cli_says_so_in_one_line(lake):
    holder = _holder(lake, "silver")
    try:
        done = subprocess.run([sys.executable, "-m", "fitbit_lakehouse", "silver"], env=_env(lake),
                              capture_output=True, text=True, timeout=120)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: another process (pid {holder.pid}) is running silver on the lake "
                                   f"{lake.lake_dir}: wait for it to end, or point FITBIT_LAKE_DIR at another lake")


def test_a_step_held_by_make_stream_says_so(monkeypatch):
    """make stream holds bronze, silver and gold until Ctrl-C: "another process (pid 31116)" did not
    say which, or that it would not end by itself."""
    from fitbit_lakehouse import kafka_broker

    commands = {"31116": "/p/.venv/bin/python -m fitbit_lakehouse stream ", "42": "/p/.venv/bin/python -c x ",
                "7": "python -m fitbit_lakehouse gold "}
    monkeypatch.setattr(kafka_broker, "_command_line", lambda pid: commands[str(pid)])
    assert pipeline._holder_said("31116") == " (pid 31116: make stream)"
    assert pipeline._holder_said("7") == " (pid 7: python -m fitbit_lakehouse gold)"
    assert pipeline._holder_said("42") == " (pid 42)" and pipeline._holder_said("") == ""
