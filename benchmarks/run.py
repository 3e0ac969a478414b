"""`make bench`: the figures of issue 7, measured side by side in one run, into docs/benchmarks.md.

Every pipeline run is `python -m fitbit_lakehouse run` (what `make run` runs after `make setup`) in a
subprocess, on a lake of its own, with its own broker started and stopped by the run, as a user's run.

1. Month 2, three cycles: a full run on a fresh lake (wall time, per-step times, peak resident memory
   of the whole process tree: runner, kernel, Spark JVM, broker); then a re-run with nothing new
   (bronze must not change); then 10% new rows appended to every file (new days after the month) and
   a third run. Medians; ratios of the medians.
2. DuckDB computing the same gold from the CSVs (the reference), three times; its gold is compared with
   the pipeline's.
3. The producer on month 2 against Kafka's own Java ProducerPerformance on the same broker.
4. The synthetic default, three runs.
4b. Parts 1 and 4 again, every run attached to one kept Spark JVM (`make spark-up`).
4c. Month 2 a day at a time: a run per new day on one growing lake, then its gold against DuckDB's.
5. Scaling: synthetic 1x, 3x, 10x the users on local[2] and on `make cluster-up`'s clusters.
6. Freshness under `make stream` against a bare Kafka -> Delta query (benchmarks/freshness.py).
7. `make test`, once, as a user runs it (skip with BENCH_TESTS=0).

BENCH_ONLY=scaling,freshness runs only those parts (a try-out: results in .cache/bench, no document);
with BENCH_MERGE=1 they replace those parts of the last whole run and the document says so (and why:
BENCH_WHY="...").

BENCH_QUICK=1 runs one cycle of each (for a try-out; the document says so).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MONTH2 = ROOT.parent / "shared" / "data" / "fitbit" / "4.12.16-5.12.16"
WORK = ROOT / ".cache" / "bench"
MONTH2_GOLD = WORK / "month2_gold"   # a copy of gold after the first month-2 run (before the +10%)
DOCS = ROOT / "docs"
PORT = 19393
QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = 1 if QUICK else 3
STEPS = ("produce", "bronze", "silver", "gold", "insights")


# --- measuring a run ---------------------------------------------------------------------

def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), VmRSS summed.

    A child that a JVM has spawned but not yet exec'd (Hadoop's local file system runs `chmod` and
    `readlink` that way) still shows the JVM's command line and, sharing its memory, the JVM's whole
    RSS: it is left out, or a sample caught at that moment counts the Spark JVM's 1.5-3 GB twice.
    (Summing PSS instead would settle it too, but reading smaps of a 3 GB JVM takes ~30 ms and its
    memory lock, twice a second, and so slows the run it measures.)"""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))

    def cmdline(p: int) -> bytes:
        try:
            return Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            return b""

    total, todo = 0, [(pid, b"")]
    while todo:
        current, parent_cmdline = todo.pop()
        own = cmdline(current)
        if parent_cmdline and own == parent_cmdline and b"java" in own.split(b"\0", 1)[0]:
            continue   # a JVM's child before its exec: the JVM's memory, already counted
        todo += [(child, own) for child in children.get(current, [])]
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_pipeline(lake: Path, raw: Path | None, label: str, settings: dict | None = None,
                 env: dict | None = None, kept_jvm_pid: int | None = None) -> dict:
    """One `python -m fitbit_lakehouse run`: wall seconds, per-step seconds, peak memory of the tree
    (and of the kept Spark JVM's, when the run attaches to one)."""
    if raw is None:   # an empty raw folder: the synthetic default
        raw = lake / "no-raw-files"
        raw.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FITBIT_LAKE_DIR": str(lake), "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{PORT}",
           "FITBIT_RAW_DIR": str(raw), "FITBIT_LOG_LEVEL": "WARNING",
           "SPARK_KEPT_JVM": "off", **(env or {})}
    if settings:
        env["FITBIT_SETTINGS"] = json.dumps(settings)
    started = time.monotonic()
    log = open(WORK / f"{label}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", "run"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid) + (_tree_rss_kb(kept_jvm_pid) if kept_jvm_pid else 0))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.monotonic() - started
    sampler.join()
    log.close()
    if code != 0:
        raise RuntimeError(f"{label} failed (exit {code}): see {WORK / f'{label}.log'}")
    reports = lake / "reports"
    steps = {s: json.loads((reports / f"{s}.json").read_text()) for s in STEPS if (reports / f"{s}.json").exists()}
    result = {"label": label, "wall_s": round(wall, 1), "peak_rss_mb": round(peak[0] / 1024),
              "steps_s": {s: r.get("seconds") for s, r in steps.items()},
              "records": {s: r.get("records") for s, r in steps.items()},
              "bronze_rows": _rows(lake / "bronze" / "events")}
    print(f"  {label}: {result['wall_s']} s, peak {result['peak_rss_mb']} MB, steps {result['steps_s']}", flush=True)
    return result


def _rows(path: Path) -> int | None:
    from fitbit_lakehouse.tables import logged_rows

    return logged_rows(str(path))


# --- inputs --------------------------------------------------------------------------------

def month2_copy(target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(MONTH2, target)
    for path in target.glob("*.csv"):
        path.chmod(0o644)
    return target


def append_new_rows(raw: Path, share: float = 0.10) -> int:
    """Appends `share` more rows to every file: copies of its last rows, moved 31 days later (new
    days, so new keys). Returns the rows appended."""
    from fitbit_lakehouse.catalogue import kind_of_file

    added = 0
    for path in sorted(raw.glob("*.csv")):
        kind = kind_of_file(path)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        tail = frame.tail(max(1, int(len(frame) * share))).copy()
        column = kind.time.source
        if kind.time.type == "date":
            moved = pd.to_datetime(tail[column], format="%m/%d/%Y") + pd.Timedelta(days=31)
            tail[column] = moved.dt.strftime("%-m/%-d/%Y")
        else:
            moved = pd.to_datetime(tail[column], format="%m/%d/%Y %I:%M:%S %p") + pd.Timedelta(days=31)
            tail[column] = moved.dt.strftime("%-m/%-d/%Y %-I:%M:%S %p")
        if "LogId" in tail:
            tail["LogId"] = (tail["LogId"].astype("int64") + 31 * 86_400_000).astype(str)
        with open(path, "a", newline="") as handle:
            handle.write("\r\n".join(",".join(r) for r in tail.itertuples(index=False)) + "\r\n")
        added += len(tail)
    return added


def synthetic_copy(target: Path, users: int) -> Path:
    from fitbit_lakehouse.synthetic import generate

    if not target.exists():
        generate(target, users=users, days=10, seed=7, heart_rate_users=max(1, users // 2), dirty_rows=True)
    return target


# --- the parts -----------------------------------------------------------------------------

def bench_month2(prefix: str = "", keep_gold: bool = True, **run_options) -> dict:
    """Three cycles of: a full run on a fresh lake, a re-run with nothing new, +10% rows and a run.
    `prefix` names the runs and their lake, `run_options` go to every run_pipeline."""
    full, rerun, incremental = [], [], []
    for i in range(REPEATS):
        raw = month2_copy(WORK / "raw_month2")
        lake = WORK / f"lake_{prefix}month2"
        shutil.rmtree(lake, ignore_errors=True)
        full.append(run_pipeline(lake, raw, f"{prefix}month2_full_{i}", **run_options))
        again = run_pipeline(lake, raw, f"{prefix}month2_rerun_{i}", **run_options)
        again["bronze_unchanged"] = again["bronze_rows"] == full[-1]["bronze_rows"]
        rerun.append(again)
        if i == 0 and keep_gold:   # gold of exactly month 2, for the comparison with DuckDB
            shutil.rmtree(MONTH2_GOLD, ignore_errors=True)
            shutil.copytree(lake / "gold", MONTH2_GOLD / "gold")
        appended = append_new_rows(raw)
        more = run_pipeline(lake, raw, f"{prefix}month2_plus10_{i}", **run_options)
        more["rows_appended"] = appended
        more["bronze_added"] = more["bronze_rows"] - again["bronze_rows"]
        incremental.append(more)
    return {"full": full, "rerun": rerun, "incremental": incremental}


def bench_duckdb(month2_lake: Path) -> dict:
    from benchmarks.duckdb_gold import gold_from_csv
    from fitbit_lakehouse.config import load_settings
    from fitbit_lakehouse.privacy import user_key, user_key_secret

    secret = user_key_secret(load_settings())
    ids = {int(i) for i in pd.read_csv(MONTH2 / "dailyActivity_merged.csv", usecols=["Id"])["Id"]}
    keys = {i: user_key(i, secret) for i in ids}
    times, gold = [], None
    for _ in range(REPEATS):
        started = time.monotonic()
        gold = gold_from_csv(MONTH2, keys)
        times.append(time.monotonic() - started)
    # the same as a command of its own, as `make run` is one: interpreter, imports and keys included
    command = [sys.executable, "-c", "import sys; from pathlib import Path; import pandas as pd; "
               "from benchmarks.duckdb_gold import gold_from_csv; from fitbit_lakehouse.config import load_settings; "
               "from fitbit_lakehouse.privacy import user_key, user_key_secret; "
               f"raw = Path({str(MONTH2)!r}); secret = user_key_secret(load_settings()); "
               "ids = set(pd.read_csv(raw / 'dailyActivity_merged.csv', usecols=['Id'])['Id']); "
               "gold_from_csv(raw, {int(i): user_key(int(i), secret) for i in ids})"]
    commands = []
    for _ in range(REPEATS):
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        commands.append(time.monotonic() - started)
    return {"seconds": times, "command_seconds": commands, "check": compare_gold(gold, month2_lake)}


def compare_gold(reference: dict, lake: Path) -> dict:
    """Row counts and key figures of the pipeline's gold (read with delta-rs) against DuckDB's."""
    from deltalake import DeltaTable

    def read(name):
        return DeltaTable(str(lake / "gold" / name)).to_pandas()

    checks = {}
    for name in ("fact_daily_activity", "fact_sleep", "kpi_daily_wellness", "dim_user", "goal_alerts",
                 "fact_hourly_activity", "fact_weight"):
        checks[name] = {"pipeline_rows": len(read(name)), "duckdb_rows": len(reference[name])}
    ours = read("kpi_daily_wellness").set_index(["user_key", "date_key"]).sort_index()
    theirs = reference["kpi_daily_wellness"].set_index(["user_key", "date_key"]).sort_index()
    joined = ours.join(theirs, rsuffix="_ref", how="inner")
    checks["kpi_daily_wellness"]["wellness_equal"] = bool(
        ((joined["wellness_score"] - joined["wellness_score_ref"]).abs().fillna(0) < 1e-9).all()
        and (joined["wellness_score"].isna() == joined["wellness_score_ref"].isna()).all())
    segments = read("dim_user").set_index("user_key")["engagement_segment"]
    ref_segments = reference["dim_user"].set_index("user_key")["engagement_segment"]
    checks["dim_user"]["segments_equal"] = bool((segments.sort_index() == ref_segments.sort_index()).all())
    return checks


def bench_producer() -> dict:
    """Our producer (month 2, in process) and Kafka's Java ProducerPerformance, alternated, same broker."""
    from fitbit_lakehouse.catalogue import scan_sources
    from fitbit_lakehouse.config import load_settings
    from fitbit_lakehouse.kafka_broker import LocalBroker, ensure_broker, ensure_topics, stop_local_broker
    from fitbit_lakehouse.produce import produce

    lake = WORK / "lake_producer"
    shutil.rmtree(lake, ignore_errors=True)
    settings = load_settings(environ={"FITBIT_LAKE_DIR": str(lake), "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{PORT}"})
    handle = ensure_broker(settings)
    ours, java = [], []
    record_size = round(sum(p.stat().st_size for p in MONTH2.glob("*.csv")) / 5_416_162)   # mean line, incl. CR LF
    try:
        for i in range(REPEATS):
            run = settings.with_overrides(**{"kafka.events_topic": f"bench_ours_{i}", "kafka.alerts_topic": "bench_alerts"})
            ensure_topics(run)
            summary = produce(run, scan_sources(MONTH2).files, MONTH2)
            ours.append(summary.rows / summary.seconds)
            java.append(_producer_performance(LocalBroker(settings).classpath(), f"bench_java_{i}", summary.rows,
                                              record_size))
    finally:
        if handle.started_here:
            stop_local_broker(settings)
    return {"ours_rows_per_s": ours, "java_records_per_s": java, "record_size": record_size, "rows": 5_416_147}


def _producer_performance(classpath: list[str], topic: str, records: int, size: int) -> float:
    cmd = ["java", "-Xmx512m", "-cp", os.pathsep.join(classpath), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers=localhost:{PORT}", "acks=all"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    final = [line for line in out if "records sent" in line][-1]   # "N records sent, X records/sec (...)"
    return float(final.split(",")[1].split()[0])


def bench_synthetic(prefix: str = "", **run_options) -> dict:
    """The embedded default, as `make run` on a fresh clone runs it (no CSVs: synthetic data)."""
    runs = []
    for i in range(REPEATS):
        lake = WORK / f"lake_{prefix}synthetic_6"
        shutil.rmtree(lake, ignore_errors=True)
        runs.append(run_pipeline(lake, None, f"{prefix}synthetic_6users_{i}", **run_options))
    return {"default": runs}


def bench_kept_jvm() -> dict:
    """The month-2 cycle and the synthetic default again, every run attached to one kept Spark JVM
    (`make spark-up`, started before the first run: that run pays its JIT warm-up)."""
    from fitbit_lakehouse import spark_server
    from fitbit_lakehouse.config import load_settings

    keeper = {"spark.kept_jvm.dir": str(WORK / "kept-jvm")}
    settings = load_settings(environ={**os.environ, "FITBIT_SETTINGS": json.dumps(keeper)})
    spark_server.stop(settings)
    pid, _ = spark_server.start(settings)
    attached = {"settings": keeper, "env": {"SPARK_KEPT_JVM": "on"}, "kept_jvm_pid": pid}
    try:
        month2 = bench_month2("kept_", keep_gold=False, **attached)
        return {**month2, "synthetic": bench_synthetic("kept_", **attached)["default"]}
    finally:
        spark_server.stop(settings)


HISTORY_FIRST_DAYS, HISTORY_DAILY_RUNS = 2, 10


def month2_by_day(target: Path) -> tuple[dict[str, tuple[str, list]], list]:
    """Month 2's files with their lines in day order (the lines byte for byte, a day's in file order),
    so that a file cut after any day is the previous cut with that day's lines appended, as a daily
    export grows. Returns name -> (header, [(day, line)]) and the days."""
    import csv
    from datetime import datetime as at

    from fitbit_lakehouse.catalogue import kind_of_file

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    files = {}
    for path in sorted(MONTH2.glob("*.csv")):
        header, *body = path.read_bytes().decode().splitlines(keepends=True)
        column = next(csv.reader([header])).index(kind_of_file(path).time.source)
        days = [at.strptime(next(csv.reader([line]))[column].split(" ")[0], "%m/%d/%Y").date() for line in body]
        order = sorted(range(len(body)), key=lambda i: days[i])
        files[path.name] = (header, [(days[i], body[i]) for i in order])
    return files, sorted({day for _, lines in files.values() for day, _ in lines})


def bench_history() -> dict:
    """Month 2 delivered a day at a time, as a daily scheduled run meets it: a first run with its first
    days, then one run per new day on the same lake. The cost of a run should follow its day's rows,
    not the days, files and commits the lake already holds; at the end, gold is compared with DuckDB's
    from the CSVs as they then stand (what the day-by-day runs built against a build from scratch)."""
    from benchmarks.duckdb_gold import gold_from_csv
    from fitbit_lakehouse.config import load_settings
    from fitbit_lakehouse.privacy import user_key, user_key_secret

    raw, lake = WORK / "raw_month2_by_day", WORK / "lake_history"
    files, days = month2_by_day(raw)
    shutil.rmtree(lake, ignore_errors=True)
    runs = []
    for i in range(HISTORY_DAILY_RUNS + 1):
        last_day = days[HISTORY_FIRST_DAYS - 1 + i]
        for name, (header, lines) in files.items():
            (raw / name).write_text(header + "".join(line for day, line in lines if day <= last_day))
        run = run_pipeline(lake, raw, f"history_{i}")
        run["last_day"] = str(last_day)
        run["silver_files"] = sum(1 for f in (lake / "silver").rglob("*.parquet") if "_delta_log" not in f.parts)
        run["lake_mb"] = round(sum(p.stat().st_size for p in lake.rglob("*") if p.is_file()) / 2**20)
        runs.append(run)
    secret = user_key_secret(load_settings())
    ids = {int(i) for i in pd.read_csv(raw / "dailyActivity_merged.csv", usecols=["Id"])["Id"]}
    check = compare_gold(gold_from_csv(raw, {i: user_key(i, secret) for i in ids}), lake)
    return {"first_days": HISTORY_FIRST_DAYS, "runs": runs, "check": check}


SCALES = (6, 18, 60)   # synthetic users (10 days each): 1x, 3x, 10x


def bench_scaling() -> dict:
    """Synthetic data at 1x, 3x and 10x the users, on local[2] (a broker the run starts) and on the
    two-worker standalone cluster with the three-broker Kafka cluster, side by side, one run each."""
    from fitbit_lakehouse.cluster import KafkaCluster, SparkCluster
    from fitbit_lakehouse.config import load_settings

    cluster_settings = load_settings(environ={"FITBIT_LAKE_DIR": str(WORK / "clusters")})
    kafka, spark = KafkaCluster(cluster_settings), SparkCluster(cluster_settings)
    kafka.up()
    spark.up()
    results: dict = {"local": {}, "cluster": {}, "cluster_note": {
        "spark_master": spark.master_url, "workers": int(cluster_settings.get("cluster.spark.workers")),
        "worker_cores": cluster_settings.get("cluster.spark.worker_cores"),
        "worker_memory": cluster_settings.get("cluster.spark.worker_memory"),
        "kafka": kafka.bootstrap_servers}}
    try:
        for users in SCALES:
            raw = synthetic_copy(WORK / f"raw_synthetic_{users}", users)
            for engine in ("local", "cluster"):
                lake = WORK / f"lake_scaling_{engine}_{users}"
                shutil.rmtree(lake, ignore_errors=True)
                env = ({"SPARK_MASTER": "local[2]"} if engine == "local" else
                       {"SPARK_MASTER": spark.master_url, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers})
                topics = None if engine == "local" else {   # the cluster's topics are shared: one per run
                    "kafka.events_topic": f"bench_scaling_{users}", "kafka.alerts_topic": f"bench_alerts_{users}"}
                results[engine][users] = run_pipeline(lake, raw, f"scaling_{engine}_{users}users",
                                                      settings=topics, env=env)
    finally:
        spark.down()
        kafka.down()
    return results


def bench_freshness() -> dict:
    from benchmarks.freshness import measure

    return measure(ROOT, WORK, MONTH2, PORT)


def bench_tests() -> dict | None:
    if os.environ.get("BENCH_TESTS", "1") == "0":
        return None
    started = time.monotonic()
    log = WORK / "pytest.log"
    env = {k: v for k, v in os.environ.items() if k != "FITBIT_USER_KEY_SECRET"}   # the bench's own, not the tests'
    code = subprocess.run(["make", "test"], cwd=ROOT, env=env, stdout=open(log, "w"),
                          stderr=subprocess.STDOUT).returncode
    summary = next((line.strip("= \n") for line in reversed(log.read_text().splitlines())
                    if " passed" in line or " failed" in line), "")
    return {"seconds": round(time.monotonic() - started, 1), "exit": code, "summary": summary}


# --- the document --------------------------------------------------------------------------

def median(values) -> float:
    return statistics.median(values)


def main() -> int:
    if not (MONTH2 / "dailyActivity_merged.csv").is_file():
        print(f"make bench needs the real month-2 files at {MONTH2}", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    # one user-key secret for every lake of the benchmark, so DuckDB's keys are the pipeline's
    os.environ.setdefault("FITBIT_USER_KEY_SECRET", "benchmark-only-secret")
    started = time.monotonic()
    results = {"date": f"{datetime.now():%Y-%m-%d %H:%M}", "quick": QUICK}
    parts = [("month2", "month 2: full run, re-run with nothing new, +10% rows", bench_month2),
             ("duckdb", "DuckDB reference", lambda: bench_duckdb(MONTH2_GOLD)),
             ("producer", "producer vs ProducerPerformance", bench_producer),
             ("synthetic", "synthetic default", bench_synthetic),
             ("kept_jvm", "month 2 and the synthetic default on a kept Spark JVM (make spark-up)", bench_kept_jvm),
             ("history", "month 2 a day at a time: one run per new day on a growing lake", bench_history),
             ("scaling", "scaling: synthetic 1x, 3x, 10x on local[2] and on the clusters", bench_scaling),
             ("freshness", "freshness under make stream vs a passthrough query", bench_freshness),
             ("tests", "make test (pytest)", bench_tests)]
    only = [p for p in os.environ.get("BENCH_ONLY", "").split(",") if p]   # a try-out of some parts
    merge = bool(only) and os.environ.get("BENCH_MERGE") == "1"
    whole_file = DOCS / "benchmarks" / "results.json"
    if merge and not whole_file.exists():   # before any part runs, not after an hour of them
        print(f"BENCH_MERGE=1 needs a whole run's {whole_file.relative_to(ROOT)}: run `make bench` once first")
        return 2
    for key, title, part in parts:
        if not only or key in only:
            print(title, flush=True)
            try:
                results[key] = part()
            except Exception as exc:   # noqa: BLE001 - the other parts still count; the document says so
                if key in ("month2", "duckdb"):
                    raise
                print(f"  {key} failed: {exc}", flush=True)
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            # kept after every part: an hour's figures survive a run cut short
            (WORK / "results_so_far.json").write_text(json.dumps(results, indent=1, default=str))
    results["bench_minutes"] = round((time.monotonic() - started) / 60, 1)
    (DOCS / "benchmarks").mkdir(parents=True, exist_ok=True)
    if only:   # kept whatever follows
        (WORK / "results_partial.json").write_text(json.dumps(results, indent=1, default=str))
    if merge:   # parts measured again, into the last whole run
        whole = json.loads(whole_file.read_text())
        for key in only:
            whole[key] = results[key]
            whole.setdefault("parts_measured_again", {})[key] = {
                "date": results["date"], "why": os.environ.get("BENCH_WHY", "")}
        whole_file.write_text(json.dumps(whole, indent=1, default=str))
        write_document(whole)
        return 0
    if only:   # the document is made from one whole run only
        print(json.dumps({k: v for k, v in results.items() if k in only}, indent=1, default=str)[:6000])
        return 0
    whole_file.write_text(json.dumps(results, indent=1, default=str))
    write_document(results)
    return 0


def write_document(r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m2 = r["month2"]
    full = median([x["wall_s"] for x in m2["full"]])
    rerun = median([x["wall_s"] for x in m2["rerun"]])
    inc = median([x["wall_s"] for x in m2["incremental"]])
    duck = median(r["duckdb"]["seconds"])
    duck_command = median(r["duckdb"]["command_seconds"]) if r["duckdb"].get("command_seconds") else None
    peak = max(x["peak_rss_mb"] for x in m2["full"] + m2["incremental"])
    failed = {k: v["error"] for k, v in r.items() if isinstance(v, dict) and "error" in v}
    syn = median([x["wall_s"] for x in r["synthetic"]["default"]]) if "synthetic" not in failed else float("nan")
    scale = ({engine: {int(u): run for u, run in r["scaling"][engine].items()} for engine in ("local", "cluster")}
             if "scaling" not in failed else {"local": {6: {"wall_s": float("nan")}, 60: {"wall_s": float("nan")}},
                                              "cluster": {}})
    scaling = {u: run["wall_s"] for u, run in scale["local"].items()}
    fresh = r["freshness"] if "freshness" not in failed else {
        "ratio_p95": float("nan"), "ratio_p50": float("nan"), "days": 0, "seconds_per_day": 0, "trigger": "-",
        "stream_kpi": {"p95_s": float("nan"), "p50_s": float("nan"), "max_s": "-", "n": 0, "expected_user_days": 0},
        "passthrough": {"p95_s": float("nan"), "p50_s": float("nan"), "max_s": "-", "n": 0}}
    ours = median(r["producer"]["ours_rows_per_s"])
    java = median(r["producer"]["java_records_per_s"])
    tests = r.get("tests")
    steps = {s: median([x["steps_s"].get(s) or 0 for x in m2["full"]]) for s in STEPS}
    kept = r.get("kept_jvm") if "kept_jvm" not in failed else None
    if kept:
        k_full, k_inc = median([x["wall_s"] for x in kept["full"]]), median([x["wall_s"] for x in kept["incremental"]])
        k_syn = median([x["wall_s"] for x in kept["synthetic"]])
    with_kept = "; with a kept Spark JVM (`make spark-up`): "

    def ok(met: bool) -> str:
        return "met" if met else "**not met**"

    rows = [
        ("month 2 `make run` (after set-up), wall", "<= 3 min", f"{full:.0f} s", ok(full <= 180)),
        ("same, ratio to DuckDB computing the same gold from the CSVs", "<= 100x (stretch 25x)",
         f"{full / duck:.0f}x (DuckDB {duck:.2f} s in process)"
         + (f"; {full / duck_command:.0f}x against DuckDB as a command of its own ({duck_command:.2f} s with "
            f"interpreter and imports)" if duck_command else "")
         + (with_kept + f"{k_full / duck:.0f}x ({k_full:.0f} s)" if kept else ""), ok(full / duck <= 100)),
        ("synthetic default `make run` (after set-up)", "<= 90 s",
         f"{syn:.0f} s" + (with_kept + f"{k_syn:.0f} s" if kept else ""), ok(syn <= 90)),
        ("re-run with nothing new (month 2)", "<= 45 s, bronze unchanged",
         f"{rerun:.0f} s, bronze unchanged: {all(x['bronze_unchanged'] for x in m2['rerun'])}",
         ok(rerun <= 45 and all(x["bronze_unchanged"] for x in m2["rerun"]))),
        ("month 2 + 10% new rows after a month-2 run: second run / first run", "<= 0.2",
         f"{inc / full:.2f} ({inc:.0f} s / {full:.0f} s)"
         + (with_kept + f"{k_inc / k_full:.2f} ({k_inc:.0f} s / {k_full:.0f} s)" if kept else ""),
         ok(inc / full <= 0.2)),
        ("producer on month 2, rows/s", ">= 300k", f"{ours:,.0f}", ok(ours >= 300_000)),
        (f"producer / Kafka's ProducerPerformance (acks=all, {r['producer']['record_size']} B records)", ">= 0.5",
         f"{ours / java:.2f} (Java {java:,.0f} records/s)", ok(ours / java >= 0.5)),
        ("peak resident memory of the whole run at month 2 (all processes)", "<= 4 GB", f"{peak / 1024:.2f} GB",
         ok(peak <= 4096)),
        ("synthetic data at 10x the users: wall / 1x wall", "<= 11", f"{scaling[60] / scaling[6]:.1f}",
         ok(scaling[60] / scaling[6] <= 11)),
        ("freshness under `make stream`: event sent -> its user-day in kpi_daily_wellness, p95 / the same for a "
         "bare Kafka -> Delta query (same trigger)", "<= 2", f"{fresh['ratio_p95']:.1f} ({fresh['stream_kpi']['p95_s']:.0f} s "
         f"/ {fresh['passthrough']['p95_s']:.0f} s)", ok(fresh["ratio_p95"] <= 2)),
        ("`make test` (in this bench run)", "<= 6 min",
         f"{tests['seconds'] / 60:.1f} min ({tests.get('summary') or 'exit ' + str(tests['exit'])})"
         if tests else "not run (BENCH_TESTS=0)",
         ok(tests["seconds"] <= 360 and tests["exit"] == 0) if tests else "-"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    users = sorted(scaling)
    for engine, style in (("local", "o-"), ("cluster", "s-")) if "scaling" not in failed else ():
        axes[0].plot(users, [scale[engine][u]["wall_s"] for u in users], style,
                     label="local[2], one broker" if engine == "local" else "standalone (2 workers), 3 brokers")
    axes[0].plot(users, [scaling[6] * u / 6 for u in users], linestyle="--", color="grey", label="linear in users")
    axes[0].set(xlabel="synthetic users (10 days each)", ylabel="`make run` wall (s)", title="Scaling")
    axes[0].legend(fontsize=8)
    axes[1].bar(list(steps), list(steps.values()), color="#4C72B0")
    axes[1].set(ylabel="seconds (median)", title="Month 2, per step")
    fig.tight_layout()
    fig.savefig(DOCS / "benchmarks" / "pipeline.png", dpi=110)

    history = r.get("history") if "history" not in failed else None
    if history:
        daily = history["runs"][1:]
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        ax.plot(range(1, len(daily) + 1), [x["wall_s"] for x in daily], "o-", label="wall of the run (s)")
        ax.set(xlabel="daily run (one new day of month 2 each)", ylabel="seconds", ylim=(0, None),
               title="A run per new day on a growing lake")
        files = ax.twinx()
        files.plot(range(1, len(daily) + 1), [x["silver_files"] for x in daily], "s--", color="grey",
                   label="silver data files")
        files.set(ylabel="silver data files after the run", ylim=(0, None))
        fig.tight_layout()
        fig.savefig(DOCS / "benchmarks" / "history.png", dpi=110)
        plt.close(fig)

    def rate(run, step):
        seconds, records = run["steps_s"].get(step), run["records"].get(step)
        return f"{records / seconds:,.0f}" if seconds and records else "-"

    scaling_rows = []
    for u in users if "scaling" not in failed else ():
        local, cluster = scale["local"][u], scale["cluster"][u]
        scaling_rows.append(
            f"| {u} ({u // 6}x) | {local['records'].get('produce') or 0:,} | {local['wall_s']:.0f} | "
            f"{cluster['wall_s']:.0f} | {cluster['wall_s'] / local['wall_s']:.2f} | "
            + " | ".join(f"{rate(local, s)} / {rate(cluster, s)}" for s in ("produce", "bronze", "silver")) + " | "
            + " | ".join(f"{local['steps_s'].get(s) or 0:.0f} / {cluster['steps_s'].get(s) or 0:.0f}"
                         for s in ("gold", "insights")) + " |")
    note = r["scaling"]["cluster_note"] if "scaling" not in failed else {
        "workers": "-", "worker_cores": "-", "worker_memory": "-", "spark_master": "-", "kafka": "-"}

    def runs(items, key="wall_s"):
        return ", ".join(f"{x[key]:.0f}" for x in items)

    lines = [
        "# Benchmarks", "",
        f"Made by `make bench` ({'BENCH_QUICK=1: one run of each' if r['quick'] else 'medians of 3'}) on "
        f"{r['date']}, on this project's 2-core machine, {r['bench_minutes']} min in all. Every pipeline run is "
        "`python -m fitbit_lakehouse run` (what `make run` does after `make setup`) on a lake of its own, with "
        "its own broker started and stopped by the run. Absolute times on a shared machine are noise; the "
        "ratios come from runs side by side in this one bench run. Raw figures: `docs/benchmarks/results.json`."
        + "".join(f" The {k} part was measured again on {a['date']} (`BENCH_ONLY={k} BENCH_MERGE=1 make bench`): "
                  f"{a['why']}." for k, a in r.get("parts_measured_again", {}).items()),
        "",
        "## Targets (issue 7)", "",
        "| figure | target | measured | |", "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows], "",
        "![scaling and steps](benchmarks/pipeline.png)", "",
        "## Month 2 (15 real files, 5,416,147 rows)", "",
        "| run | wall (s), each | median | per step (median, s) |", "| --- | --- | --- | --- |",
        f"| full, fresh lake | {runs(m2['full'])} | {full:.0f} | "
        + ", ".join(f"{s} {v:.0f}" for s, v in steps.items()) + " |",
        f"| re-run, nothing new | {runs(m2['rerun'])} | {rerun:.0f} | "
        + ", ".join(f"{s} {median([x['steps_s'].get(s) or 0 for x in m2['rerun']]):.0f}" for s in STEPS) + " |",
        f"| +10% new rows ({m2['incremental'][0]['rows_appended']:,} appended; bronze took "
        f"{m2['incremental'][0]['bronze_added']:,}) | {runs(m2['incremental'])} | {inc:.0f} | "
        + ", ".join(f"{s} {median([x['steps_s'].get(s) or 0 for x in m2['incremental']]):.0f}" for s in STEPS) + " |",
        "", f"Peak resident memory (runner + kernel + Spark JVM + broker, sampled every 0.5 s): "
        f"{', '.join(str(x['peak_rss_mb']) for x in m2['full'])} MB in the full runs, "
        f"{', '.join(str(x['peak_rss_mb']) for x in m2['incremental'])} MB in the +10% runs.", "",
        "The same gold, checked against DuckDB's reference computed from the CSVs (`benchmarks/duckdb_gold.py`), "
        "with the pipeline's gold as it stood after the first full month-2 run:", "",
        "| table | pipeline rows | DuckDB rows | values equal |", "| --- | --- | --- | --- |",
        *[f"| {t} | {c['pipeline_rows']:,} | {c['duckdb_rows']:,} | "
          f"{c.get('wellness_equal', c.get('segments_equal', '-'))} |" for t, c in r["duckdb"]["check"].items()], "",
        *(["## Month 2 and the synthetic default on a kept Spark JVM (`make spark-up`)", "",
            "The same runs, each attached to one Spark JVM that `make spark-up` started before the first of them "
            "(`spark.kept_jvm`; `src/fitbit_lakehouse/spark_server.py`): no JVM start, and after the first run no JIT "
            "warm-up. The verdicts above are those of `make run` without it.", "",
            "| run | wall (s), each | median | per step (median, s) | against its own JVM |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {title} | {runs(items)} | {median([x['wall_s'] for x in items]):.0f} | "
              + ", ".join(f"{s} {median([x['steps_s'].get(s) or 0 for x in items]):.0f}" for s in STEPS)
              + f" | {median([x['wall_s'] for x in items]) / base:.2f} |"
              for title, items, base in (("month 2, full, fresh lake", kept["full"], full),
                                         ("re-run, nothing new", kept["rerun"], rerun),
                                         ("+10% new rows", kept["incremental"], inc),
                                         ("synthetic default", kept["synthetic"], syn))], "",
            f"Bronze unchanged by the re-runs: {all(x['bronze_unchanged'] for x in kept['rerun'])}. Peak resident "
            f"memory, the kept JVM's tree included: {', '.join(str(x['peak_rss_mb']) for x in kept['full'])} MB in the "
            f"full runs, {', '.join(str(x['peak_rss_mb']) for x in kept['incremental'])} MB in the +10% runs. The kept "
            "JVM holds its memory between runs too.", ""] if kept else []),
        *(_history_section(history) if history else []),
        "## Producer", "",
        f"Month 2 from the CSV files to the broker, in process: {', '.join(f'{v:,.0f}' for v in r['producer']['ours_rows_per_s'])} "
        f"rows/s; Kafka's Java `ProducerPerformance` (kafka-tools {r.get('kafka_version', '4.1.1')}, one "
        f"{r['producer']['record_size']}-byte record per send, acks=all, same broker, alternated with ours): "
        f"{', '.join(f'{v:,.0f}' for v in r['producer']['java_records_per_s'])} records/s.", "",
        "## Synthetic data", "",
        f"Default (6 users x 10 days, both months, every file): {runs(r['synthetic']['default'])} s.", "",
        "## Scaling: local[2] against a Spark standalone cluster and a Kafka cluster", "",
        f"Synthetic users at 1x, 3x and 10x (10 days each, every file of both months), one `make run` each, "
        f"local and cluster alternated. Local: `SPARK_MASTER=local[2]`, the broker the run starts. Cluster: "
        f"`make cluster-up`'s {note['workers']} workers ({note['worker_cores']} core, {note['worker_memory']} "
        f"each) at {note['spark_master']}, and three KRaft brokers ({note['kafka']}; replication 3, "
        "min.insync.replicas 2, acks=all), all on this one 2-core machine.", "",
        "| users | rows produced | local wall (s) | cluster wall (s) | cluster / local | produce rows/s local / "
        "cluster | bronze records/s | silver records/s | gold s | insights s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *scaling_rows, "",
        "## Freshness under `make stream` (issue 11)", "",
        f"A paced replay (`produce --speed`) of {fresh['days']} days of month 2's dailyActivity (its 2nd to "
        f"{fresh['days'] + 1}th), one day of rows every {fresh['seconds_per_day']:.0f} s, after a warm-up: the first "
        "day sent at once and waited for (first batches, tables created), left out of the figures. Time from the "
        "Kafka record's timestamp (its send) to the "
        "moment its row is visible (delta-rs polls every 0.5 s). Both with the same processingTime trigger "
        f"({fresh['trigger']}), on the same broker, one after the other.", "",
        "| query | rows | p50 (s) | p95 (s) | max (s) |", "| --- | --- | --- | --- | --- |",
        f"| bare Kafka -> Delta passthrough | {fresh['passthrough']['n']} | {fresh['passthrough']['p50_s']} | "
        f"{fresh['passthrough']['p95_s']} | {fresh['passthrough']['max_s']} |",
        f"| `make stream`: Kafka -> bronze -> silver -> gold `kpi_daily_wellness` | {fresh['stream_kpi']['n']} of "
        f"{fresh['stream_kpi']['expected_user_days']} user-days | {fresh['stream_kpi']['p50_s']} | "
        f"{fresh['stream_kpi']['p95_s']} | {fresh['stream_kpi']['max_s']} |", "",
        f"Ratio of the p95s: {fresh['ratio_p95']} (p50s: {fresh['ratio_p50']}).", "",
    ]
    if failed:
        lines += ["## Parts that failed in this run", "", *[f"- {k}: `{v}`" for k, v in failed.items()], ""]
    notes = DOCS / "benchmarks_notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    (DOCS / "benchmarks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


def _history_section(history: dict) -> list[str]:
    first, daily = history["runs"][0], history["runs"][1:]
    early, late = median([x["wall_s"] for x in daily[:3]]), median([x["wall_s"] for x in daily[-3:]])
    return [
        "## Month 2 a day at a time (a daily scheduled run)", "",
        f"Month 2's files cut after a day, as a daily export grows (each file's lines in day order, byte for byte): "
        f"a first run on a fresh lake with its first {history['first_days']} days, then one run per new day on the "
        f"same lake, {len(daily)} days. Each daily run sends about the same rows (one day); the lake grows under it. "
        f"The last three daily runs took {late / early:.2f} of the first three (medians, {late:.0f} s / {early:.0f} s) "
        f"while silver's data files went from {daily[0]['silver_files']} to {daily[-1]['silver_files']}.", "",
        "![daily runs](benchmarks/history.png)", "",
        "| run | through | rows sent | wall (s) | per step (s) | silver data files | lake (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {'first' if i == 0 else f'day {i}'} | {x['last_day']} | {x['records'].get('produce') or 0:,} | "
          f"{x['wall_s']:.0f} | " + ", ".join(f"{s} {x['steps_s'].get(s) or 0:.0f}" for s in STEPS)
          + f" | {x['silver_files']} | {x['lake_mb']} |" for i, x in enumerate([first, *daily])], "",
        "Gold after the last daily run against DuckDB's gold computed from the CSVs as they then stood "
        "(built in one go):", "",
        "| table | pipeline rows | DuckDB rows | values equal |", "| --- | --- | --- | --- |",
        *[f"| {t} | {c['pipeline_rows']:,} | {c['duckdb_rows']:,} | "
          f"{c.get('wellness_equal', c.get('segments_equal', '-'))} |" for t, c in history["check"].items()], "",
    ]


if __name__ == "__main__":
    sys.exit(main())
