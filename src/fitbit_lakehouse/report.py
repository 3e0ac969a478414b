"""The findings of insights.analyse as charts (PNG), a Markdown report and one self-contained HTML report.

The HTML file carries its charts as base64 PNG and its style inline: it opens offline, from a mail or
an artifact store, and prints with no figure or table cut across pages. Every text that comes from
data is escaped (html.escape); every image has an alt text and every section an id.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from .config import Settings
from .insights import HOURS, WEEKDAYS, Finding

# finding id -> the PNG its chart is saved as (the first four keep the names earlier runs used)
CHART_FILES = {
    "wellness-trend": "wellness_trend.png",
    "engagement-segments": "engagement_segments.png",
    "hourly-pattern": "hourly_profile.png",
    "weekday-pattern": "steps_by_weekday.png",
    "weekday-hour-heatmap": "weekday_hour_heatmap.png",
    "sleep-efficiency": "sleep_vs_time_in_bed.png",
    "steps-vs-calories": "steps_vs_calories.png",
    "sedentary-vs-sleep": "sedentary_vs_sleep.png",
}


@dataclass(frozen=True)
class Chart:
    path: Path
    png: bytes
    alt: str


@dataclass(frozen=True)
class WrittenReports:
    markdown: Path
    html: Path
    charts: list[Path]


# --- charts -------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _trend(ax, trend: pd.DataFrame):
    import matplotlib.dates as mdates

    scores = trend["wellness_score"]
    if scores.notna().sum() == 0:
        return False
    # one row per calendar day: NaN days break the line, and are shaded so a gap reads as "no data"
    ax.plot(trend.index, scores, marker="o", markersize=3, color="#55A868", label="mean wellness score")
    missing = scores.isna()
    for _, run in scores[missing].groupby((~missing).cumsum()[missing]):
        ax.axvspan(run.index.min() - pd.Timedelta(hours=12), run.index.max() + pd.Timedelta(hours=12),
                   color="#DDDDDD", alpha=0.6, lw=0)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y"))
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set(title="Mean wellness score per day (grey: no score)", xlabel="", ylabel="score (0-100)")
    return True


def _bars(ax, series: pd.Series, title: str, xlabel: str, ylabel: str, color: str, labels=None):
    values = pd.to_numeric(series, errors="coerce").fillna(0.0)
    if values.abs().sum() == 0:   # nothing counted (no users, no hours): no chart
        return False
    ax.bar([str(v) for v in (labels or series.index)], values.values, color=color)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return True


def _heatmap(ax, grid: pd.DataFrame):
    import numpy as np

    if grid.notna().sum().sum() == 0:
        return False
    image = ax.imshow(np.ma.masked_invalid(grid.values), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(HOURS)), [str(h) for h in HOURS], fontsize=8)
    ax.set_yticks(range(len(WEEKDAYS)), WEEKDAYS)
    ax.set(title="Mean steps per user-hour (valid days)", xlabel="hour of day")
    ax.figure.colorbar(image, ax=ax, label="steps")
    return True


def _scatter(ax, x: pd.Series, y: pd.Series, title: str, xlabel: str, ylabel: str, color: str, r=None, n=None):
    if not len(x):
        return False
    ax.scatter(x, y, s=10, alpha=0.5, color=color)
    stats = f" (r = {r:+.2f}, n = {n:,})" if r is not None else (f" (n = {n:,})" if n is not None else "")
    ax.set(title=title + stats, xlabel=xlabel, ylabel=ylabel)
    return True


def _sleep(ax, analysis: dict):
    nights = analysis["nights"]
    stats = analysis["asleep_vs_in_bed"]
    if not _scatter(ax, nights["time_in_bed"], nights["minutes_asleep"], "Minutes asleep vs time in bed",
                    "time in bed (min)", "minutes asleep (min)", "#4C72B0", stats["r"], stats["n"]):
        return False
    top = float(nights["time_in_bed"].max())
    low = analysis["low_efficiency"]
    ax.plot([0, top], [0, top], color="#999999", lw=1, label="100% efficiency")
    ax.plot([0, top], [0, low * top], color="#C44E52", lw=1, ls="--", label=f"{low:.0%} efficiency")
    ax.legend(loc="upper left", fontsize=8)
    return True


def _paint(plt, finding: Finding):
    """The figure of a finding, or None when it has nothing to draw."""
    d = finding.data
    size = (9, 4) if finding.id in ("wellness-trend", "weekday-hour-heatmap") else (7, 4)
    fig, ax = plt.subplots(figsize=size)
    drawn = {
        "wellness-trend": lambda: _trend(ax, d),
        "engagement-segments": lambda: _bars(ax, d, "Users by engagement segment", "", "users", "#C44E52"),
        "hourly-pattern": lambda: _bars(ax, d, "Mean steps per user-hour by hour of day (valid days)", "hour",
                                        "steps", "#8172B2"),
        "weekday-pattern": lambda: _bars(ax, d, "Mean daily steps by weekday (valid days)", "", "steps",
                                         "#4C72B0", labels=[w[:3] for w in d.index]),
        "weekday-hour-heatmap": lambda: _heatmap(ax, d),
        "sleep-efficiency": lambda: _sleep(ax, d),
        "steps-vs-calories": lambda: _scatter(ax, d["pairs"]["total_steps"], d["pairs"]["calories"],
                                              "Calories vs steps (valid days)", "steps", "calories", "#DD8452",
                                              d["r"], d["n"]),
        "sedentary-vs-sleep": lambda: _scatter(ax, d["pairs"]["sedentary_minutes"], d["pairs"]["minutes_asleep"],
                                               "Minutes asleep vs sedentary minutes", "sedentary minutes",
                                               "minutes asleep", "#937860", d["r"], d["n"]),
    }[finding.id]()
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    return fig


def render_charts(findings: list[Finding], out: Path, dpi: int) -> dict[str, Chart]:
    """The charts of the findings that have data, saved as PNG under out/; by finding id."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    charts = {}
    for finding in findings:
        if finding.id not in CHART_FILES:
            continue
        path = out / CHART_FILES[finding.id]
        fig = _paint(plt, finding)
        if fig is None:
            path.unlink(missing_ok=True)   # no stale chart of an earlier run beside this report
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        plt.close(fig)
        path.write_bytes(buffer.getvalue())
        charts[finding.id] = Chart(path, buffer.getvalue(), f"{finding.title}. {finding.reading}")
    return charts


# --- HTML ---------------------------------------------------------------------------------

STYLE = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --accent: #2f6f4f; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1040px; padding: 24px; line-height: 1.45; }
h1 { margin: 0 0 4px; font-size: 1.7em; }
h2 { margin: 0 0 6px; font-size: 1.25em; color: var(--accent); }
h3 { font-size: 1em; margin: 14px 0 6px; }
.meta { color: var(--muted); font-size: .9em; margin: 0 0 12px; }
nav { border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); padding: 6px 0; margin-bottom: 18px;
      font-size: .9em; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
section { padding: 14px 0 18px; border-bottom: 1px solid var(--line); }
.reading { margin: 0 0 10px; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: .85em; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #f7faf8; }
.tile .value { display: block; font-size: 1.5em; font-weight: 600; }
.tile .label { display: block; color: var(--muted); font-size: .85em; }
table { border-collapse: collapse; font-size: .9em; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f4f8; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: .8em; padding-top: 12px; }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav { display: none; }
  a { color: inherit; text-decoration: none; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  figure, table, .tiles, .tile, tr { break-inside: avoid; page-break-inside: avoid; }
  section { border-bottom: none; }
  .tile { background: none; }
}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def html_table(frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return '<p class="empty">Nothing to list.</p>'
    head = "".join(f"<th scope=\"col\">{_e(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(chart: Chart | None) -> str:
    if chart is None:
        return ""
    from struct import unpack

    width, height = unpack(">II", chart.png[16:24])   # from the PNG's IHDR: no layout shift while loading
    data = base64.b64encode(chart.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(chart.alt)}" width="{width}" '
            f'height="{height}"><figcaption>{_e(chart.path.name)}</figcaption></figure>')


def _tiles(tiles: list[tuple[str, str]]) -> str:
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><span class="value">{_e(value)}</span><span class="label">{_e(label)}</span></div>'
        for label, value in tiles) + "</div>"


def _section_body(finding: Finding, charts: dict[str, Chart]) -> str:
    parts = [f'<p class="reading">{_e(finding.reading)}</p>']
    if finding.id == "kpi-tiles":
        parts.append(_tiles(finding.data))
    parts.append(_figure(charts.get(finding.id)))
    if finding.table is not None:
        parts.append(html_table(finding.table))
    for name, table in finding.extra.items():
        parts.append(f"<h3>{_e(name.replace('_', ' ').capitalize())}</h3>{html_table(table)}")
    return "".join(parts)


def _meta_line(meta: dict) -> str:
    model = meta.get("model")
    text = (f"Generated {meta['generated']:%Y-%m-%d %H:%M} from the lake {meta['lake']}; "
            f"MLflow run {meta['mlflow_run_id']}")
    if model:
        text += f"; model {model['name']} version {model['version']}"
    return text + "."


def render_html(findings: list[Finding], charts: dict[str, Chart], meta: dict) -> str:
    nav = "".join(f'<a href="#{_e(f.id)}">{_e(f.title)}</a>' for f in findings)
    sections = "".join(f'<section id="{_e(f.id)}"><h2>{_e(f.title)}</h2>{_section_body(f, charts)}</section>'
                       for f in findings)
    versions = ", ".join(f"{t} v{v}" for t, v in sorted(meta.get("versions", {}).items()))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Fitbit wellness report</title><style>{STYLE}</style></head><body>"
            f"<header><h1>Fitbit wellness report</h1><p class=\"meta\">{_e(_meta_line(meta))}</p>"
            f'<nav aria-label="sections">{nav}</nav></header><main>{sections}</main>'
            f"<footer>Delta versions read: {_e(versions or 'none')}.</footer></body></html>\n")


# --- Markdown -----------------------------------------------------------------------------

def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame | None) -> list[str]:
    if frame is None or frame.empty:
        return ["_Nothing to list._"]
    lines = ["| " + " | ".join(_md_cell(c) for c in frame.columns) + " |",
             "| " + " | ".join("---" for _ in frame.columns) + " |"]
    return lines + ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]


def render_markdown(summary: dict, findings: list[Finding], charts: dict[str, Chart], meta: dict) -> str:
    lines = [f"# Fitbit wellness report ({meta['generated']:%Y-%m-%d %H:%M})", "", _meta_line(meta), ""]
    for finding in findings:
        lines += [f"## {finding.title}", "", finding.reading, ""]
        if finding.id == "kpi-tiles":
            lines += ["| KPI | value |", "| --- | --- |",
                      *[f"| {k} | {_md_cell(v)} |" for k, v in summary.items()], ""]
        chart = charts.get(finding.id)
        if chart is not None:
            lines += [f"![{_md_cell(finding.title)}]({chart.path.name})", ""]
        if finding.table is not None:
            lines += [*markdown_table(finding.table), ""]
        for name, table in finding.extra.items():
            lines += [f"### {name.replace('_', ' ').capitalize()}", "", *markdown_table(table), ""]
    return "\n".join(lines)


def write_reports(summary: dict, findings: list[Finding], meta: dict, out: Path,
                  settings: Settings) -> WrittenReports:
    """The charts, the Markdown report and the HTML report under out/."""
    meta = {"generated": datetime.now(), **meta}
    charts = render_charts(findings, out, int(settings.get("insights.chart_dpi")))
    markdown = out / settings.get("insights.markdown_report")
    markdown.write_text(render_markdown(summary, findings, charts, meta))
    page = out / settings.get("insights.html_report")
    page.write_text(render_html(findings, charts, meta), encoding="utf-8")
    return WrittenReports(markdown, page, [c.path for c in charts.values()])
