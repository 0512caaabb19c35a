"""Browser test: serve the app with `streamlit run`, open every page in Chromium, launch a tiny run.

Needs Debian's chromium (``.ci/run`` installs it) and the playwright package (never
``playwright install``). Skipped when Chromium is missing, unless KASP_REQUIRE_BROWSER=1 (set by
CI), in which case it fails. Screenshots go to $KASP_SCREENSHOTS (default tests/_screenshots).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("KASP_SCREENSHOTS", ROOT / "tests" / "_screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        if os.environ.get("KASP_REQUIRE_BROWSER") == "1":
            pytest.fail("KASP_REQUIRE_BROWSER=1 but no chromium on the PATH: apt-get install -y chromium")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_store):
    store = tmp_path_factory.mktemp("browserstore")
    shutil.copytree(tiny_store / "teacher", store / "20000101-000000-sst2-finetune")
    port = _free_port()
    env = dict(os.environ, KASP_RUNS_DIR=str(store), HF_HUB_OFFLINE="1")
    log = open(store / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("streamlit did not start: " + (store / "streamlit.log").read_text()[-2000:])
    yield url, store
    proc.terminate()
    proc.wait(10)


def _no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


@pytest.fixture
def page(browser, request):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1400, "height": 2400})  # Streamlit scrolls inside its own container
    pg.set_default_timeout(60_000)
    yield pg
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        pg.screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
    pg.close()


def _open(page, link: str, ready_text: str, chart: bool = True) -> None:
    """Click a sidebar link and wait until the page's own text (and, if asked, a chart) has rendered."""
    page.get_by_role("link", name=link).click()
    page.get_by_text(ready_text).first.wait_for(timeout=60_000)
    if chart:
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
    _no_exception(page)


def test_every_page_and_a_launched_run(page, server, tiny_pretrained):
    url, store = server
    page.goto(url)
    page.get_by_text("Knowledge-aware sparse pruning").first.wait_for(timeout=60_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # point the shared sidebar at the tiny model, whose teacher is in the store
    box = page.get_by_label("Pre-trained model", exact=True)
    box.fill(str(tiny_pretrained))
    box.press("Enter")
    page.wait_for_timeout(3000)  # let the rerun that commits the new value finish before navigating
    assert box.input_value() == str(tiny_pretrained)
    page.get_by_role("link", name="Prune").click()
    page.get_by_text("Budget: training steps").wait_for(timeout=30_000)
    page.get_by_text("Teacher: ").first.wait_for(timeout=30_000)
    _no_exception(page)
    steps = page.get_by_label("Budget: training steps", exact=True)
    steps.fill("10")
    steps.press("Tab")
    page.wait_for_timeout(1000)
    ev = page.get_by_label("Evaluate every N steps", exact=True)
    ev.fill("5")
    ev.press("Tab")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("Launched").wait_for(timeout=30_000)
    page.get_by_text(": done").first.wait_for(timeout=180_000)
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "prune.png"), full_page=True)

    _open(page, "Results", "One run")
    launched = [p for p in store.iterdir() if p.is_dir() and p.name.endswith("kasp-s90")]
    assert launched, "the launched run is not in the store"
    # the newest run is shown in detail: its status line must say done
    page.get_by_text(f"{launched[0].name} (live run): state done").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "results.png"), full_page=True)

    # Attention: the launched run against its teacher; bertviz must draw SVG inside its iframe, offline
    _open(page, "Attention", "One student in detail", chart=False)
    frame = page.frame_locator("iframe").first
    frame.locator("svg").first.wait_for(timeout=120_000)
    assert frame.locator("svg text").count() > 0  # the token labels
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "attention.png"), full_page=True)

    # Inspect: the launched run's checkpoint (default source: a run in the store)
    _open(page, "Inspect", "What structured removal could drop")
    page.screenshot(path=str(SHOTS / "inspect.png"), full_page=True)

    # Weights: the launched run recorded its story; Predictions: teacher and student on dev example 0
    _open(page, "Weights", "What to notice:")
    page.get_by_text("▶ Play").first.wait_for(timeout=30_000)  # plotly's animation button
    page.screenshot(path=str(SHOTS / "weights.png"), full_page=True)
    _open(page, "Predictions", "Gold label (GLUE sst2 dev)", chart=False)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1  # the table (drawn on a canvas)
    page.screenshot(path=str(SHOTS / "predict.png"), full_page=True)
