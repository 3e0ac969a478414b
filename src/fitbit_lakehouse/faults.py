"""Fault injection for the crash tests (tests/e2e/test_faults.py, `make chaos`); inert unless armed.

FITBIT_KILL_AFTER="<point>:<k>" kills this process with SIGKILL right after the k-th time it
reaches <point>, where <point> is
- `<layer>/<table>`: a Delta commit to that table (a new file in its _delta_log), whoever wrote it,
  Spark's streaming sink included; a watcher thread sees the commit within milliseconds;
- a named point in the code, e.g. `alerts:committed` (a Kafka transaction of alerts committed).
"""
from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

ENV = "FITBIT_KILL_AFTER"
_COMMIT_FILE = re.compile(r"^\d{20}\.json$")
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    value = os.environ.get(ENV, "")
    point, sep, k = value.rpartition(":")
    return (point, int(k)) if value and sep and k.isdigit() else None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def reached(point: str) -> None:
    """A named point in the code; kills the process on its k-th pass when armed for it."""
    target = _target()
    if target is None or target[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= target[1]:
        _die()


def arm(lake_dir: Path) -> None:
    """Start watching the armed table's Delta log, if a table is armed."""
    target = _target()
    if target is None or "/" not in target[0]:
        return
    log_dir = lake_dir / target[0] / "_delta_log"

    def commits() -> set[str]:
        try:
            return {name for name in os.listdir(log_dir) if _COMMIT_FILE.match(name)}
        except FileNotFoundError:
            return set()

    before = commits()

    def watch() -> None:
        while True:
            if len(commits() - before) >= target[1]:
                _die()
            time.sleep(0.002)

    threading.Thread(target=watch, name="fault-injection", daemon=True).start()
