"""In a real browser (headless Chromium driven by Playwright): the live dashboard, the HTML report and
JupyterLab, as a user opens them.

The browser is Debian's `chromium` package (`make setup` installs it where it may); without it these
tests are skipped, saying so. The lake is the committed month-2 slice run through the real pipeline
(Kafka, Spark, Delta) once for the module; one user's rows are held back and streamed in while the
dashboard is open. Expected figures are computed here from the gold Delta tables with delta-rs and
pandas, not by the dashboard's code.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fitbit_lakehouse import pipeline
from fitbit_lakehouse.kafka_broker import free_port
from tests.conftest import MONTH2_SLICE

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
FILES = ("dailyActivity_merged.csv", "sleepDay_merged.csv", "hourlySteps_merged.csv")
TILE_LABELS = ("Valid user-days", "Users", "Mean daily steps", "Mean active minutes", "Mean wellness score",
               "Mean sleep efficiency")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a server started here in a session of its own, and whatever it started in it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():   # first in each test's arguments: without chromium, nothing else is built
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium binary: `make setup` installs Debian's chromium package with apt-get "
                    "(as root or with passwordless sudo); or `sudo apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


# --- the lake: the month-2 slice through the pipeline, one user held back ----------------------------

@pytest.fixture(scope="module")
def held_back(test_root) -> dict:
    """A raw folder with the committed slice's daily, sleep and hourly files (the slice, also where the
    full month is at hand: small and quick) less the rows of their last user, and those rows, to be
    appended (a user whose tracker syncs later)."""
    raw = test_root / "browser_raw"
    raw.mkdir()
    data = {name: (MONTH2_SLICE / name).read_bytes() for name in FILES}
    last_id = data[FILES[0]].rstrip().rsplit(b"\n", 1)[-1].split(b",", 1)[0]
    held = {}
    for name, content in data.items():
        header, *lines = content.splitlines(keepends=True)
        (raw / name).write_bytes(header + b"".join(l for l in lines if not l.startswith(last_id + b",")))
        held[name] = b"".join(l for l in lines if l.startswith(last_id + b","))
        assert held[name], f"{name} has no row of user {last_id}"
    return {"raw": raw, "rows": held}


@pytest.fixture(scope="module")
def settings(base_settings, broker, held_back, test_root):
    return base_settings.with_overrides(**{
        "paths.raw_dir": str(held_back["raw"]), "paths.lake_dir": str(test_root / "browser_lake"),
        "kafka.bootstrap_servers": broker.bootstrap_servers, "kafka.events_topic": "e2e_browser_events",
        "kafka.alerts_topic": "e2e_browser_alerts"})


def _through_the_pipeline(settings) -> None:
    pipeline.produce_step(settings)
    pipeline.bronze_step(settings)
    pipeline.silver_step(settings)
    pipeline.gold_step(settings)


@pytest.fixture(scope="module")
def lake(settings, spark):
    _through_the_pipeline(settings)
    return settings.lake_dir


def expected_tiles(lake_dir: Path) -> dict[str, float]:
    """The KPI tiles' figures from gold as CONTRACT.md defines them, read with delta-rs."""
    from deltalake import DeltaTable

    kpi = DeltaTable(str(lake_dir / "gold" / "kpi_daily_wellness")).to_pandas()
    users = DeltaTable(str(lake_dir / "gold" / "dim_user")).to_pandas()
    return {"Valid user-days": len(kpi), "Users": len(users), "Mean daily steps": kpi["total_steps"].mean(),
            "Mean active minutes": kpi["active_minutes"].mean(),
            "Mean wellness score": kpi["wellness_score"].dropna().mean(),
            "Mean sleep efficiency": kpi["sleep_efficiency"].dropna().mean()}


def _number(text: str) -> float:
    """A tile's value as shown: 1,234 / 8,429.3 / 91.8%."""
    value = float(text.replace(",", "").rstrip("%"))
    return value / 100 if text.endswith("%") else value


def _matches(shown: dict[str, str], expected: dict[str, float]) -> bool:
    if set(shown) != set(expected):
        return False
    for label, want in expected.items():
        try:
            got = _number(shown[label])
        except ValueError:
            return False
        # counts exactly; means as rounded for display (one decimal; efficiency in % with one decimal)
        tolerance = 0 if label in ("Valid user-days", "Users") else 0.0005 if "%" in shown[label] else 0.05
        if abs(got - want) > tolerance + 1e-9:
            return False
    return True


# --- the dashboard ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard(lake):
    """`python -m fitbit_lakehouse dashboard` (what `make dashboard` runs) on the test lake."""
    port = free_port()
    env = {**os.environ, "FITBIT_LAKE_DIR": str(lake), "FITBIT_SETTINGS": json.dumps({"dashboard.refresh_seconds": 1})}
    process = subprocess.Popen([sys.executable, "-m", "fitbit_lakehouse", "dashboard", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Dashboard at "):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(120) or process.poll() is not None:
            pytest.fail("the dashboard did not start:\n" + "".join(lines))
        yield {"url": f"http://localhost:{port}", "lines": lines}
    finally:
        _stop_group(process)


def _tiles(page) -> dict[str, str]:
    return page.evaluate("""() => Object.fromEntries(
        Array.from(document.querySelectorAll('[data-testid="stMetric"]'), m => [
            m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
            m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")


def _wait_for_tiles(page, expected: dict[str, float], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    shown = {}
    while time.monotonic() < deadline:
        shown = _tiles(page)
        if _matches(shown, expected):
            return shown
        time.sleep(0.5)
    pytest.fail(f"the tiles show {shown}, expected {expected}")


def test_dashboard_shows_the_kpis_and_follows_new_events(browser, dashboard, settings, held_back):
    from playwright.sync_api import expect

    started = [line for line in dashboard["lines"] if line.startswith("Dashboard at ")]
    assert started == [f"Dashboard at {dashboard['url']} (gold of {settings.lake_dir / 'gold'}, refreshed every 1 s; "
                       f"Ctrl-C stops)\n"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(dashboard["url"])
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=60_000)
    before = expected_tiles(settings.lake_dir)
    shown = _wait_for_tiles(page, before, timeout=30)
    assert tuple(shown) == TILE_LABELS
    for section in ("Wellness trend", "Engagement segments", "By hour of day", "By weekday", "Sleep efficiency",
                    "Recent goal alerts"):
        expect(page.get_by_role("heading", name=section)).to_be_visible(timeout=30_000)
    expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(timeout=30_000)
    page.evaluate("window.__opened_once = true")   # gone if the page reloads

    # the held-back user's tracker syncs: new rows in the raw files, through Kafka, bronze, silver, gold
    for name, rows in held_back["rows"].items():
        with open(held_back["raw"] / name, "ab") as out:
            out.write(rows)
    _through_the_pipeline(settings)
    after = expected_tiles(settings.lake_dir)
    assert after["Users"] == before["Users"] + 1 and after["Valid user-days"] > before["Valid user-days"]

    _wait_for_tiles(page, after, timeout=60)
    assert page.evaluate("window.__opened_once === true"), "the page was reloaded"
    assert not errors, errors
    page.close()


# --- the HTML report -------------------------------------------------------------------------------

def test_html_report_renders_every_chart(browser, lake, settings):
    result = pipeline.insights_step(settings)
    report = Path(result.get("html_report") or settings.reports_dir / settings.get("insights.html_report",
                                                                                   "wellness_report.html"))
    assert report.is_file(), f"insights wrote no HTML report ({report})"
    page = browser.new_page()
    requests = []
    page.route(re.compile(r"^(https?|wss?)://"), lambda route: (requests.append(route.request.url), route.abort()))
    page.goto(report.as_uri())
    images = page.locator("img")
    assert images.count() >= 1, "the report has no chart"
    for i in range(images.count()):   # lazy images load once seen
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
    shown = page.evaluate("Array.from(document.images, i => ({src: i.getAttribute('src').slice(0, 40), "
                          "alt: i.alt, width: i.naturalWidth, height: i.naturalHeight}))")
    broken = [image for image in shown if not image["width"] or not image["height"]]
    assert not broken, f"broken images: {broken}"
    assert not requests, f"the report is not self-contained, it asks for {requests}"
    page.close()


# --- JupyterLab ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """`python -m fitbit_lakehouse lab` (what `make lab` runs), headless, on a free port with a token.
    Lab's user settings in a temporary folder, autosave off: the notebooks on disk are not touched."""
    home = tmp_path_factory.mktemp("jupyterlab")
    settings_dir = home / "settings" / "@jupyterlab" / "docmanager-extension"
    settings_dir.mkdir(parents=True)
    (settings_dir / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    port, token = free_port(), "browser-test-token"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log = open(home / "lab.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "fitbit_lakehouse", "lab", "--port", str(port), "--token", token, "--no-browser", "--",
         "--ServerApp.ip=127.0.0.1", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}"],   # not a .ipynb_checkpoints in notebooks/
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (home / "lab.log").read_text())
            time.sleep(0.5)
        yield {"url": url, "token": token}
    finally:
        try:   # kernels included
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST"),
                                   timeout=10).close()
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _stop_group(process)
        log.close()


def _checkpoints() -> list[str]:
    return sorted(p.name for p in (ROOT / "notebooks" / ".ipynb_checkpoints").glob("*"))


def test_jupyterlab_runs_a_cell_of_01_produce_on_the_project_kernel(browser, jupyter_lab):
    from playwright.sync_api import expect

    notebook = ROOT / "notebooks" / "01_produce.ipynb"
    on_disk, checkpoints_before = notebook.read_bytes(), _checkpoints()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{jupyter_lab['url']}/lab/tree/01_produce.ipynb?token={jupyter_lab['token']}")
    expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle")).to_be_visible(timeout=90_000)   # kernel up

    # the parameters cell, as a user runs it: click into it, Shift+Enter
    first = page.locator(".jp-Notebook .jp-CodeCell").first
    first.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    expect(first.locator(".jp-InputPrompt")).to_have_text("[1]:", timeout=60_000)

    # a cell of one's own below: the project's package imports, in the kernel that ran the parameters
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.insert_text("import sys, fitbit_lakehouse.pipeline\n"
                              "print('kernel', sys.prefix, fitbit_lakehouse.pipeline.NOTEBOOKS[0])\n"
                              "print('replay is', replay)")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has_text="replay is")
    output.wait_for(timeout=60_000)
    assert output.inner_text().split("\n")[:2] == [f"kernel {sys.prefix} 01_produce", "replay is False"]
    page.close()
    assert notebook.read_bytes() == on_disk   # nothing saved
    assert _checkpoints() == checkpoints_before   # Lab's checkpoints went to the temporary folder
