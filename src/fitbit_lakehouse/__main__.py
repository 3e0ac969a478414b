"""Command line: python -m fitbit_lakehouse <command> (see --help)."""
from __future__ import annotations

import argparse
import logging
import json
import os
import signal
import sys
import time
from datetime import date


def _elsewhere(settings) -> str:
    """The other lakes' brokers this project started on the lake's port (FITBIT_LAKE_DIR set otherwise)."""
    from .kafka_broker import LocalBroker, project_brokers_on

    port = LocalBroker(settings).port
    homes = project_brokers_on(port)
    return (f"; port {port} has the broker started for another lake (its files in {homes[0]}): stop it with that "
            f"lake's FITBIT_LAKE_DIR") if homes else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fitbit_lakehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("produce", help="send the Fitbit CSV rows not sent before to the events topic")
    p.add_argument("--files", help="only files whose kind or name contains one of these (comma-separated)")
    p.add_argument("--limit", type=int, help="send at most this many rows")
    p.add_argument("--speed", type=float, help="seconds of event time per wall second (0 = as fast as possible)")
    p.add_argument("--replay", action="store_true", help="send every row again, also those sent before")
    p.add_argument("--raw-dir", help="overrides FITBIT_RAW_DIR")
    for name, help_ in (("bronze", "Kafka -> bronze/events"), ("silver", "bronze -> silver tables + quarantine")):
        q = sub.add_parser(name, help=help_)
        q.add_argument("--trigger", choices=["availableNow", "processingTime"])
    g = sub.add_parser("gold", help="silver -> gold star schema, KPIs and alerts (incremental)")
    g.add_argument("--from", dest="start", type=date.fromisoformat, help="backfill: rebuild from this date")
    g.add_argument("--to", dest="end", type=date.fromisoformat, help="backfill: rebuild up to this date")
    sub.add_parser("insights", help="charts, report and an MLflow run")
    st = sub.add_parser("steps", help="several steps in one process, e.g. `steps bronze,silver,gold`")
    st.add_argument("names", help="comma-separated, in order: produce, bronze, silver, gold, insights")
    sub.add_parser("export", help="gold tables as Parquet and CSV extracts for BI tools")
    sub.add_parser("run", help="the five notebooks headless, with a broker for the run")
    j = sub.add_parser("job", help="run a job of bundle.yml locally, as Databricks would (make job)")
    j.add_argument("job", nargs="?", default="fitbit_pipeline", help="the job's key in resources/ (default: "
                   "fitbit_pipeline; `all` = fitbit_producer, then fitbit_pipeline)")
    j.add_argument("--target", default="dev", help="bundle target whose variables apply (default dev)")
    j.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a job parameter, as `databricks bundle run --params` takes them (repeatable)")
    j.add_argument("--only", help="only these tasks (comma-separated task keys)")
    sub.add_parser("lakeview", help="rebuild dashboards/fitbit_wellness.lvdash.json (Databricks) from sql/queries")
    dash = sub.add_parser("dashboard", help="the live web dashboard over gold (Streamlit; Ctrl-C stops)")
    dash.add_argument("--port", type=int, help="overrides dashboard.port")
    sub.add_parser("stream", help="bronze, silver and gold running continuously (Ctrl-C stops)")
    vac = sub.add_parser("vacuum", help="delete the files of the lake's tables that no version within the "
                         "retention uses (make vacuum)")
    vac.add_argument("--retain-hours", type=int, help="the retention (default: maintenance.vacuum_retain_hours, 168)")
    vac.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    vac.add_argument("--force", action="store_true", help="allow a retention under the tables' own; holds every "
                     "step's lock meanwhile, so stop make stream first")
    sub.add_parser("clean-lake", help="delete the lake, its checkpoints and ledger, the local broker's topics, "
                   "reports and MLflow store (the raw CSVs stay)")
    lb = sub.add_parser("lab", help="JupyterLab on notebooks/ with the project's kernel (make lab)")
    lb.add_argument("--port", type=int)
    lb.add_argument("--token", help="the server's token (default: a random one, printed)")
    lb.add_argument("--no-browser", action="store_true")
    lb.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="passed on to jupyter lab (after --)")
    a = sub.add_parser("alerts", help="print goal alerts from the alerts topic as they arrive")
    a.add_argument("--latest", action="store_true", help="only alerts from now on")
    sy = sub.add_parser("synthetic", help="write the synthetic data set (every Kaggle file of both months, with "
                                          "their formats and quirks) into FITBIT_RAW_DIR")
    sy.add_argument("--users", type=int, help="users (default: synthetic.users in conf/base.yml)")
    sy.add_argument("--days", type=int, help="days in all, half in each month (default: synthetic.days)")
    sy.add_argument("--seed", type=int, help="random seed: the same seed writes the same files (default: synthetic.seed)")
    sy.add_argument("--clean", action="store_true", help="without the few bad rows it plants for quarantine")
    sub.add_parser("setup", help="check Java, resolve the Kafka broker's and Spark's jars (once)")
    k = sub.add_parser("kafka", help="the local broker")
    k.add_argument("action", choices=["up", "down", "status"])
    sk = sub.add_parser("spark", help="a Spark JVM kept between runs, which runs and kernels attach to")
    sk.add_argument("action", choices=["up", "down", "status", "serve"])
    sk.add_argument("--dir", help=argparse.SUPPRESS)   # serve: the keeper's directory, from `up`
    c = sub.add_parser("cluster", help="a local Spark standalone cluster and a three-node Kafka cluster")
    c.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)

    from .bronze import DataLossError
    from .bundle import BundleError
    from .cluster import ClusterError
    from .config import ConfigError
    from .gold import NothingToBuild
    from .kafka_broker import BrokerError
    from .maintenance import VacuumRefused
    from .maven import SetupError
    from .pipeline import (BadDateRange, DiskFull, LakeBusy, NotWritable, RunInterrupted, StepFailed,
                           settings_from_params)
    from .privacy import PrivacyError
    from .produce import NoInput
    from .silver import ReconciliationError
    from .spark import AFTER_CTRL_C, exit_on_ctrl_c

    try:
        settings = settings_from_params(raw_dir=getattr(args, "raw_dir", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exit_on_ctrl_c()
    signal.signal(signal.SIGTERM, as_ctrl_c)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        return _dispatch(args, settings)
    except (BadDateRange, BrokerError, BundleError, ClusterError, ConfigError, DataLossError, DiskFull, LakeBusy,
            NoInput, NothingToBuild, NotWritable, PrivacyError, SetupError, StepFailed, ReconciliationError,
            VacuumRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"interrupted during {exc}: {AFTER_CTRL_C}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def as_ctrl_c(signum, frame) -> None:
    """SIGTERM (a scheduler's timeout, `kill`, `docker stop`) does what Ctrl-C does: a run stops its
    kernel and the broker it started, `make stream` stops between micro-batches. Python's default
    would end the process without either."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):   # SIGINT ignored (a job started in the background) or left to the OS
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


# which of stdout and stderr are a terminal, asked before it can hang up (a hung-up one answers no)
_TERMINAL_FDS = [fd for fd in (1, 2) if os.isatty(fd)]


def on_hangup(signum, frame) -> None:
    """SIGHUP (the terminal closed: an ssh session dropped, a window shut) does what Ctrl-C does. Writes
    to a closed terminal fail, so what went there now goes nowhere, and the stopping is not cut short by
    its own output; output redirected to a file still goes there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in _TERMINAL_FDS:
        os.dup2(devnull, fd)
    os.close(devnull)
    as_ctrl_c(signum, frame)


def _dispatch(args, settings) -> int:
    from . import faults, pipeline

    faults.arm(settings.lake_dir)   # inert unless FITBIT_KILL_AFTER is set (crash tests)
    if args.command == "produce":
        pipeline.produce_step(settings, file_filter=args.files, limit=args.limit, speed=args.speed,
                              replay=args.replay)
    elif args.command == "bronze":
        print(json.dumps(pipeline.bronze_step(settings, args.trigger)))
    elif args.command == "silver":
        print(json.dumps(pipeline.silver_step(settings, args.trigger), indent=1))
    elif args.command == "gold":
        print(json.dumps(pipeline.gold_step(settings, args.start, args.end), indent=1, default=str))
    elif args.command == "insights":
        print(json.dumps(pipeline.insights_step(settings), indent=1, default=str))
    elif args.command == "steps":
        steps = {"produce": pipeline.produce_step, "bronze": pipeline.bronze_step, "silver": pipeline.silver_step,
                 "gold": pipeline.gold_step, "insights": pipeline.insights_step}
        names = [n.strip() for n in args.names.split(",") if n.strip()]
        unknown = [n for n in names if n not in steps]
        if unknown:
            print(f"error: no step {', '.join(unknown)}; the steps are {', '.join(steps)}", file=sys.stderr)
            return 2
        for name in names:
            steps[name](settings)
    elif args.command == "export":
        from .insights import export_bi
        from .spark import get_spark

        paths = export_bi(get_spark(settings), settings)
        print(f"wrote {len(paths)} extracts to {settings.reports_dir / 'bi'}")
    elif args.command == "run":
        pipeline.run_notebooks(settings)
    elif args.command == "job":
        from .bundle import BundleError, run_job

        given = {}
        for pair in args.param:
            name, sep, value = pair.partition("=")
            if not sep:
                raise BundleError(f"--param {pair!r} is not NAME=VALUE")
            given[name.strip()] = value.strip()
        only = [t.strip() for t in args.only.split(",")] if args.only else None
        jobs = ["fitbit_producer", "fitbit_pipeline"] if args.job == "all" else [args.job]
        for job in jobs:   # with `all`, each job takes the parameters it has
            run_job(settings, job, args.target, given, only, ignore_unknown=len(jobs) > 1)
    elif args.command == "lakeview":
        from .bundle import write_dashboard

        print(f"wrote {write_dashboard(settings.project_root)}")
    elif args.command == "dashboard":
        from .dashboard import serve

        return serve(settings, port=args.port)
    elif args.command == "alerts":
        from .alerts import consume_alerts
        from .kafka_broker import ensure_broker

        ensure_broker(settings)
        consume_alerts(settings, from_beginning=not args.latest)
    elif args.command == "stream":
        pipeline.stream(settings)
    elif args.command == "vacuum":
        from .maintenance import retention_hours, summary_line, vacuum_lake

        started = time.monotonic()
        hours = retention_hours(settings, args.retain_hours)
        results = vacuum_lake(settings, hours, dry_run=args.dry_run, force=args.force)
        print(summary_line(results, hours, args.dry_run, time.monotonic() - started))
        for result in results:
            if result.kept_because:
                print(f"  kept {result.table}: {result.kept_because}")
    elif args.command == "clean-lake":
        from .maintenance import clean_lake

        deleted = clean_lake(settings)
        print(f"deleted {', '.join(p.name for p in deleted)} from {settings.lake_dir}" if deleted
              else f"nothing to delete: {settings.lake_dir} holds no lake")
    elif args.command == "lab":
        from .lab import lab

        lab(settings, port=args.port, token=args.token, open_browser=not args.no_browser,
            extra=[a for a in args.jupyter_args if a != "--"])
    elif args.command == "synthetic":
        from .synthetic import generate

        paths = generate(settings.raw_dir, users=args.users or settings.get("synthetic.users"),
                         days=args.days or settings.get("synthetic.days"),
                         seed=settings.get("synthetic.seed") if args.seed is None else args.seed,
                         heart_rate_users=settings.get("synthetic.heart_rate_users"),
                         dirty_rows=settings.get("synthetic.dirty_rows") and not args.clean)
        print(f"wrote {len(paths)} files under {settings.raw_dir}")
    elif args.command == "setup":
        from .kafka_broker import LocalBroker, build_broker_cds_archive
        from .spark import build_cds_archive, extra_jars, require_java

        require_java()
        LocalBroker(settings).classpath()
        extra_jars(settings)
        archives = [build_cds_archive(settings), build_broker_cds_archive(settings)]
        print("setup ok: Java, the Kafka broker's jars and Spark's Delta and Kafka jars are in place"
              + (", and class-data archives of Spark and the broker (a faster start)" if any(archives) else ""))
    elif args.command == "cluster":
        from .cluster import cluster_down, cluster_up

        if args.action == "up":
            logging.getLogger("kafka").setLevel(logging.CRITICAL)   # refused connections while nodes start are expected
            print(cluster_up(settings))
        else:
            print("stopped" if cluster_down(settings) else "no cluster was running")
    elif args.command == "spark":
        from . import spark_server

        if args.action == "up":
            pid, started = spark_server.start(settings)
            print(f"kept Spark JVM {'started' if started else 'already running'} (keeper pid {pid}); runs and "
                  f"notebook kernels attach to it, one at a time; make spark-down stops it")
        elif args.action == "down":
            print("stopped" if spark_server.stop(settings) else "no kept Spark JVM was running")
        elif args.action == "serve":
            from pathlib import Path

            spark_server.serve(Path(args.dir))
        else:
            pid = spark_server.running_pid(settings)
            print(f"kept Spark JVM running (keeper pid {pid})" if pid else "no kept Spark JVM running")
    elif args.command == "kafka":
        from .kafka_broker import LocalBroker, ensure_broker, ensure_topics, stop_local_broker

        if args.action == "up":
            handle = ensure_broker(settings)
            ensure_topics(settings)
            where = "started" if handle.started_here else "already answering"
            print(f"Kafka {where} at {handle.bootstrap_servers}")
        elif args.action == "down":
            print("stopped" if stop_local_broker(settings) else f"no local broker of this lake was running{_elsewhere(settings)}")
        else:
            pid = LocalBroker(settings).running_pid()
            print(f"local broker pid {pid}" if pid else f"no local broker of this lake running{_elsewhere(settings)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
