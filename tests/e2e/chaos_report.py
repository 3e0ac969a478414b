"""The table `make chaos` leaves behind: scenario | runs | rows lost | rows duplicated.

Each fault scenario records its differences to the clean run before it asserts them, so a failing
scenario is in the table too. When CHAOS_REPORT names a file, every scenario appends a JSON line to
<file>.jsonl (the pytest workers of `make chaos` are separate processes) and the end of the session
writes the table from them.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from pathlib import Path

import pandas as pd


def row_differences(expected: pd.DataFrame, got: pd.DataFrame) -> tuple[int, int]:
    """(rows of expected missing from got, rows of got beyond expected), rows compared as multisets."""
    columns = sorted(expected.columns)
    want = Counter(map(tuple, expected[columns].astype(str).itertuples(index=False)))
    have = Counter(map(tuple, got.reindex(columns=columns).astype(str).itertuples(index=False)))
    return sum((want - have).values()), sum((have - want).values())


def _lines_file() -> Path | None:
    report = os.environ.get("CHAOS_REPORT")
    return Path(report + ".jsonl") if report else None


def record(scenario: str, runs: int, lost: int, duplicated: int, quarantine_once: bool = True,
           detail: str = "") -> None:
    lines = _lines_file()
    if lines is None:
        return
    row = {"scenario": scenario, "runs": runs, "lost": int(lost), "duplicated": int(duplicated),
           "quarantine_once": bool(quarantine_once), "detail": detail}
    with lines.open("a") as out:   # one short line per write: appends of two workers do not interleave
        out.write(json.dumps(row) + "\n")


def start() -> None:
    lines = _lines_file()
    if lines is not None and lines.exists():
        lines.unlink()


def write_table() -> None:
    lines = _lines_file()
    if lines is None or not lines.exists():
        return
    results = [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]
    results.sort(key=lambda r: r["scenario"])
    write(Path(os.environ["CHAOS_REPORT"]), results)
    lines.unlink()


def write(path: Path, results: list[dict]) -> None:
    lines = ["# Fault injection: `make chaos`", "",
             "Each scenario crashes (kill -9) or breaks the pipeline, re-runs it to the end and compares every",
             "table (bronze, silver with quarantine and identity, gold) and the alerts topic, as a",
             "read_committed consumer sees it, with a clean run of the same input. Rows lost and duplicated",
             "are summed over all tables and the alerts topic; written by tests/e2e/chaos_report.py.", "",
             "A writer's k runs over every commit it makes in one run of this input, up to 3 (gold commits",
             "once per table per run; `COMMITS` in tests/e2e/test_faults.py, checked against the clean run).",
             "A recreated topic has no table to compare: test_a_recreated_topic_stops_bronze_with_a_clear_error",
             f"checks that bronze stops with a clear error. Run of {datetime.now():%Y-%m-%d %H:%M}.", "",
             "| scenario | runs | rows lost | rows duplicated | each bad record in quarantine once | what |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in results:
        lines.append(f"| {r['scenario']} | {r['runs']} | {r['lost']} | {r['duplicated']} | "
                     f"{'yes' if r['quarantine_once'] else 'NO'} | {r['detail']} |")
    total_lost, total_dup = sum(r["lost"] for r in results), sum(r["duplicated"] for r in results)
    lines += ["", f"{len(results)} scenarios, {sum(r['runs'] for r in results)} runs: "
                  f"{total_lost} rows lost, {total_dup} rows duplicated."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
