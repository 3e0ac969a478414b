"""Spark's scratch files (shuffle and spill files hold raw records) go to a dir of the process under the
lake, not /tmp, and what a killed process left is removed by the next start."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fitbit_lakehouse.spark import claim_scratch, scratch_root, sweep_scratch

CLAIM = """
import sys
from fitbit_lakehouse.config import load_settings
from fitbit_lakehouse.spark import claim_scratch
scratch = claim_scratch(load_settings())
(scratch / "blockmgr-1").mkdir()
(scratch / "blockmgr-1" / "shuffle_0_0_0.data").write_bytes(b"raw records")
print(scratch, flush=True)
sys.stdin.read()   # until the test closes stdin or kills this process
"""


def _claimer(lake: Path) -> tuple[subprocess.Popen, Path]:
    """Another process that claims a scratch dir on the lake and writes into it, as a Spark JVM would."""
    proc = subprocess.Popen([sys.executable, "-c", CLAIM], env=dict(os.environ, FITBIT_LAKE_DIR=str(lake)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_a_live_process_keeps_its_scratch_and_a_killed_ones_is_removed(base_settings, tmp_path):
    settings = base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")})
    root = scratch_root(settings)
    first, first_dir = _claimer(settings.lake_dir)
    second, second_dir = _claimer(settings.lake_dir)
    try:
        assert first_dir.parent == root and second_dir.parent == root and first_dir != second_dir
        assert (first_dir / "blockmgr-1" / "shuffle_0_0_0.data").is_file()
        unrelated = root / "notes"   # not a scratch dir: no lock file in it
        unrelated.mkdir()
        assert sweep_scratch(root) == [] and first_dir.is_dir() and second_dir.is_dir()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert sweep_scratch(root) == [first_dir]
        assert not first_dir.exists() and second_dir.is_dir() and unrelated.is_dir()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(timeout=30)
    third, third_dir = _claimer(settings.lake_dir)   # a start sweeps what the killed ones left
    try:
        assert not second_dir.exists() and third_dir.is_dir()
    finally:
        third.kill()
        third.wait(timeout=30)


def test_the_sessions_jvm_writes_its_scratch_under_the_lake(spark, base_settings):
    scratch = claim_scratch(base_settings)   # the claim this process made when its session started
    assert scratch.parent.name == base_settings.get("spark.scratch_dir") and scratch.is_dir()
    assert Path(spark.conf.get("spark.local.dir")) == scratch
    assert Path(spark.sparkContext._jvm.java.lang.System.getProperty("java.io.tmpdir")) == scratch
    spark.range(5000).repartition(3).count()   # a shuffle: files of its block manager
    assert any(scratch.glob("blockmgr-*/*"))
    assert sweep_scratch(scratch.parent) == [] and scratch.is_dir()   # in use: kept


def test_a_lake_path_with_a_space_starts_spark_and_keeps_its_scratch_there(tmp_path):
    lake = tmp_path / "my lake"   # the JVM's options carry lake paths: each must stay one option
    script = ("from fitbit_lakehouse.config import load_settings\n"
              "from fitbit_lakehouse.spark import get_spark\n"
              "spark = get_spark(load_settings())\n"
              "system = spark.sparkContext._jvm.java.lang.System\n"
              "print(spark.range(3).count(), system.getProperty('java.io.tmpdir'), sep='|')\n")
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, FITBIT_LAKE_DIR=str(lake)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    count, tmpdir = done.stdout.strip().splitlines()[-1].split("|")
    assert count == "3" and Path(tmpdir).parent == lake / "_spark_tmp"
