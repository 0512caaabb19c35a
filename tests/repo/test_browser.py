"""Browser test: serve the app with `streamlit run`, open every page in Chromium, launch tiny runs.

Every page must load without a request to any host other than the app's own and without a console
error. Two browser contexts (two students) each launch a run: each sees its own Cancel and not the
other's.

Needs Debian's chromium (``.ci/run`` installs it) and the playwright package (never
``playwright install``). Skipped when Chromium is missing, unless KASP_REQUIRE_BROWSER=1 (set by
CI), in which case it fails. Screenshots go to $KASP_SCREENSHOTS (default tests/_screenshots).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.helpers import ROOT

SHOTS = Path(os.environ.get("KASP_SCREENSHOTS", ROOT / "tests" / "_screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    proc = _start(store, port)
    yield f"http://127.0.0.1:{port}", store
    proc.terminate()
    proc.wait(10)


def _start(store: Path, port: int) -> subprocess.Popen:
    """`streamlit run app.py` on ``store`` at ``port``, answering its health check."""
    env = dict(os.environ, KASP_RUNS_DIR=str(store), HF_HUB_OFFLINE="1", KASP_MAX_JOBS="1", KASP_MAX_QUEUED="2")
    env.pop("KASP_OPERATOR", None)
    env.pop("KASP_OPERATOR_KEY", None)
    log = open(store / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    pytest.fail("streamlit did not start: " + (store / "streamlit.log").read_text()[-2000:])


def _no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


def _watch(pg, url: str) -> dict[str, list[str]]:
    """Record every request to a host other than the app's own, and every console error, of a page."""
    host = urlparse(url).hostname
    seen: dict[str, list[str]] = {"external": [], "console": []}

    def on_request(req) -> None:
        u = urlparse(req.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname not in (host, "localhost", "127.0.0.1"):
            seen["external"].append(req.url)

    def on_console(msg) -> None:
        # Opening a page's own address (a reload, a bookmark of /prune) makes Streamlit's frontend probe
        # /<page>/_stcore/health and /host-config first, for apps served under a path prefix; the 404
        # answers are its own probing, on the app's host, before it falls back to /_stcore/.
        if msg.type != "error" or re.search(r"/[\w-]+/_stcore/(health|host-config)$", msg.location.get("url", "")):
            return
        seen["console"].append(f"{msg.text} ({msg.location.get('url')})")

    pg.on("request", on_request)
    pg.on("console", on_console)
    return seen


def _clean(seen: dict[str, list[str]]) -> None:
    assert not seen["external"], f"requests to other hosts: {seen['external']}"
    assert not seen["console"], f"console errors: {seen['console']}"


@pytest.fixture
def page(browser, request, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1400, "height": 2400})  # Streamlit scrolls inside its own container
    pg.set_default_timeout(60_000)
    seen = _watch(pg, server[0])
    yield pg
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        pg.screenshot(path=str(SHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
    pg.close()
    _clean(seen)


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
    assert page.get_by_text("Deploy", exact=True).count() == 0  # client.toolbarMode = "minimal"
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # point the shared sidebar at the tiny model, whose teacher is in the store
    box = page.get_by_label("Pre-trained model", exact=True)
    box.fill(str(tiny_pretrained))
    box.press("Enter")
    page.wait_for_timeout(3000)  # let the rerun that commits the new value finish before navigating
    assert box.input_value() == str(tiny_pretrained)
    page.get_by_role("link", name="Prune").click()
    page.get_by_text("Budget: training steps").wait_for(timeout=30_000)  # every default counts steps
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
    page.get_by_text("launched in this browser session").first.wait_for(timeout=30_000)
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
    page.get_by_text("Next ▶").first.wait_for(timeout=30_000)  # the page's own stepper (Back / Next / Play)
    page.screenshot(path=str(SHOTS / "weights.png"), full_page=True)
    _open(page, "Predictions", "Gold label (SST-2 dev)", chart=False)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1  # the table (drawn on a canvas)
    page.screenshot(path=str(SHOTS / "predict.png"), full_page=True)

def _student(browser, url: str, model: str):
    """A new browser context (its own session), on the Prune page with the tiny model chosen."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 2400})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    seen = _watch(pg, url)
    pg.goto(url)
    pg.get_by_text("Knowledge-aware sparse pruning").first.wait_for(timeout=60_000)
    box = pg.get_by_label("Pre-trained model", exact=True)
    box.fill(model)
    box.press("Enter")
    pg.wait_for_timeout(3000)
    pg.get_by_role("link", name="Prune").click()
    pg.get_by_text("Teacher: ").first.wait_for(timeout=30_000)
    return ctx, pg, seen


def _launch_long_run(pg) -> str:
    """Fill the form with a run that would take hours, launch it, return its id."""
    pg.get_by_text("Budget: training steps").wait_for(timeout=30_000)  # the form opens counting steps
    for label, value in (("Budget: training steps", "100000"), ("Training examples (0 = all)", "64"),
                         ("Evaluate every N steps", "0")):
        box = pg.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
        pg.wait_for_timeout(800)
    pg.get_by_role("button", name="Launch").click()
    msg = pg.get_by_text(re.compile(r"^Launched \S+ \((queued|running)\)")).first
    msg.wait_for(timeout=30_000)
    return msg.inner_text().split()[1]


def test_two_students_each_cancel_only_their_own_run(browser, server, tiny_pretrained):
    url, store = server
    ctx_a, a, seen_a = _student(browser, url, str(tiny_pretrained))
    ctx_b, b, seen_b = _student(browser, url, str(tiny_pretrained))
    try:
        run_a = _launch_long_run(a)
        run_b = _launch_long_run(b)
        assert run_a != run_b
        for pg, mine, other in ((a, run_a, run_b), (b, run_b, run_a)):
            pg.get_by_text(f"{other}:").first.wait_for(timeout=30_000)  # both runs are in both panels
            pg.locator(f".st-key-cancel-{mine}").wait_for(timeout=30_000)
            assert pg.locator(f".st-key-cancel-{other}").count() == 0, f"{other} is not this session's run"
            assert pg.get_by_role("button", name="Launch").is_disabled()  # one run per session at a time
            _no_exception(pg)
        a.reload()  # a reload of the same address is the same owner: the token is in the address
        a.locator(f".st-key-cancel-{run_a}").wait_for(timeout=60_000)
        assert a.locator(f".st-key-cancel-{run_b}").count() == 0
        b.get_by_text(f"queued, position 1 of 1, waiting for {run_a}").first.wait_for(timeout=30_000)
        b.screenshot(path=str(SHOTS / "prune-queued.png"), full_page=True)
        a.locator(f".st-key-cancel-{run_a}").get_by_role("button").click()
        a.get_by_text(f"{run_a}: cancelled").first.wait_for(timeout=60_000)
        # the cancelled run stays in its owner's panel, the queued one starts, still cancellable only by b
        b.get_by_text(f"{run_b}: running").first.wait_for(timeout=60_000)
        a.get_by_text(f"{run_a}: cancelled").first.wait_for(timeout=10_000)
        assert a.locator(f".st-key-cancel-{run_b}").count() == 0
        a.screenshot(path=str(SHOTS / "prune-cancelled.png"), full_page=True)
        b.locator(f".st-key-cancel-{run_b}").get_by_role("button").click()
        b.get_by_text(f"{run_b}: cancelled").first.wait_for(timeout=60_000)
        _no_exception(a)
        _no_exception(b)
    finally:
        from kasp.experiments import jobs

        for run in jobs.active_runs(store):  # never leave a run burning the CPU (the store is this test's own)
            jobs.cancel(run)
        ctx_a.close()
        ctx_b.close()
    _clean(seen_a)
    _clean(seen_b)


def test_a_preset_and_a_shared_link_open_their_views(page, server):
    """A lecturer clicks a preset on the Overview (the session, and so run ownership, stays), then a
    student opens a link to a Results view someone copied (issue 15, item 5)."""
    from urllib.parse import parse_qs

    url, _ = server
    page.goto(url + "/?task=sst2")
    page.get_by_text("Start with a question").wait_for()
    page.wait_for_function("() => window.location.search.includes('session=')")
    session = parse_qs(urlparse(page.url).query)["session"]
    page.get_by_role("link", name="What did the student keep?").click()
    page.wait_for_function("() => window.location.pathname.endsWith('/attention')")
    page.get_by_text("Attention knowledge").first.wait_for()
    page.wait_for_function("() => window.location.search.includes('session=')")
    q = parse_qs(urlparse(page.url).query)
    assert q["task"] == ["sst2"] and q["session"] == session  # same task, same session (so the same runs are yours)
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "preset-attention.png"), full_page=True)

    page.goto(url + "/results?task=sst2&runs=precomputed/kasp-sst2-s90,precomputed/magnitude-sst2-s90"
                    "&run=precomputed/magnitude-sst2-s90")
    page.get_by_text("Selected by the link").wait_for()
    page.get_by_text("magnitude baseline on SST-2").first.wait_for()  # the linked run is the one shown in detail
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "shared-link-results.png"), full_page=True)


#: per lesson step: the page's path, the anchor scrolled to, and the text of its mark on the answer
LESSON = [("/inspect", "sparsity-per-matrix", "The answer:"),
          ("/", "the-cubic-sparsity-schedule", "half-way:"),
          ("/", "dev-metric-against-sparsity", "90 %: compare the methods here"),
          ("/", "dev-metric-against-sparsity", "90 %: compare the methods here"),
          ("/attention", "retention-against-sparsity", "90 %"),
          ("/weights", "the-weights-story", "Press Play"),
          ("/predict", "predictions", "Look at the rows")]


def test_the_guided_lesson_end_to_end(browser, server):
    """A lecturer at a 1024x768 projector starts the lesson on the Overview and clicks Next through its seven
    steps: each opens its page and view, scrolls to its heading and marks the answer; Back goes back."""
    url, _ = server
    pg = browser.new_page(viewport={"width": 1024, "height": 768})
    pg.set_default_timeout(90_000)
    seen = _watch(pg, url)
    try:
        pg.goto(url + "/?task=sst2")
        pg.get_by_role("link", name="Start the guided lesson (7 steps)").click()
        for n, (path, anchor, mark) in enumerate(LESSON, 1):
            pg.get_by_text(f"Lesson, step {n} of 7").first.wait_for()
            pg.wait_for_function(f"() => new URLSearchParams(window.location.search).get('lesson') === '{n}'")
            assert pg.evaluate("() => window.location.pathname").rstrip("/") == path.rstrip("/"), n
            pg.get_by_text(mark).first.wait_for()  # the answer, marked (a plotly annotation or a note)
            # the step's heading is scrolled into the projector's view
            pg.wait_for_function("(a) => { const e = document.getElementById(a); if (!e) return false; "
                                 "const r = e.getBoundingClientRect(); return r.top >= -5 && r.top < 500; }", arg=anchor,
                                 timeout=30_000)
            # and the step's bar just above it: its question and Next link in view with the chart
            bar_top = pg.evaluate(f"() => document.querySelector('.st-key-lesson-bar-{n}').getBoundingClientRect().top")
            assert -5 <= bar_top < 200, (n, bar_top)
            _no_exception(pg)
            pg.screenshot(path=str(SHOTS / f"lesson-{n}.png"))
            if n < len(LESSON):
                pg.get_by_role("link", name=re.compile(r"^Next: ")).first.click()
        pg.get_by_role("link", name=re.compile(r"^Back$")).first.click()
        pg.get_by_text("Lesson, step 6 of 7").first.wait_for()
        pg.get_by_role("link", name="End lesson").first.click()
        pg.get_by_text("Start with a question").wait_for()
        assert pg.get_by_text("Lesson, step").count() == 0
    finally:
        pg.close()
    _clean(seen)


def test_a_page_opened_first_by_its_address_goes_through_the_app(browser, tmp_path):
    """The server's very first request is a page's own address (a bookmark, a link): the page must come with the
    app's sidebar (task box, the linked task) and its named pages, not Streamlit's list of file names."""
    port = _free_port()
    proc = _start(tmp_path, port)
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        pg.goto(f"http://127.0.0.1:{port}/weights?task=mrpc")
        pg.get_by_text("Weights: see pruning happen (MRPC)").first.wait_for(timeout=90_000)
        pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        assert pg.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').count() == 1  # the GLUE task box
        links = [a.inner_text() for a in pg.locator('[data-testid="stSidebarNav"] a').all()]
        assert any("Overview" in x for x in links) and not any(x.strip() in ("app", "weights") for x in links), links
        _no_exception(pg)
    finally:
        pg.close()
        proc.terminate()
        proc.wait(10)
