"""How fast the app answers in a real browser (issue 25, item 7): the cold first page and a task switch.

Run from the repository root on an idle machine (about 2 minutes; needs Debian's chromium and playwright,
as the browser tests):

    .venv/bin/python bench/browser_timing.py     # prints a table, writes bench/browser_timing.json

What is measured, in headless Chromium at 1024x768 against `streamlit run app.py` on an empty run store:
- **cold first page**: from starting the server process to the Overview drawn (its title, its charts, and
  Streamlit's "running" indicator gone), in the first browser tab; also the server's own start (health
  check answering) and the first page after it, split into the title's arrival and the charts' (plotly.js,
  about 3.5 MB, is loaded by the browser when the first chart arrives);
- **warm first page**: a new tab (a new session) on the started server, three times;
- **task switch**: choosing another task in the sidebar's GLUE task box on the Overview until the page is
  redrawn for it (its chart heading names the task, the indicator gone), over every task with shipped
  results, twice around.
Targets (issue 25): cold first page under 5 s, a task switch under 0.5 s, on an idle machine. The load
average at the start is recorded beside the numbers: on a busy machine they are not comparable.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = [("mrpc", "MRPC (paraphrase)", "MRPC"), ("rte", "RTE (entailment)", "RTE"), ("stsb", "STS-B (similarity)", "STS-B"),
         ("cola", "CoLA (grammaticality)", "CoLA"), ("sst2", "SST-2 (sentiment)", "SST-2")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _idle(pg, timeout: float = 60.0) -> None:
    """Wait until Streamlit's "running" indicator is gone (it shows while the script runs)."""
    pg.wait_for_timeout(50)
    pg.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout * 1000)


def _drawn(pg, heading: str, t0: float | None = None) -> dict[str, float]:
    """Wait until the Overview is drawn; with ``t0``, the seconds from it to the page's title (the first text the
    app's script sends) and to its charts drawn by plotly.js (which the browser loads on the first chart)."""
    pg.get_by_text("Knowledge-aware sparse pruning").first.wait_for(timeout=60_000)
    title = time.perf_counter()
    pg.get_by_text(heading).first.wait_for(timeout=60_000)
    pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=60_000)
    charts = time.perf_counter()
    _idle(pg)
    return {} if t0 is None else {"title_s": round(title - t0, 2), "charts_s": round(charts - t0, 2)}


def main() -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium on the PATH (apt-get install -y chromium)", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    store = tempfile.mkdtemp(prefix="kasp-bench-store-")
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, KASP_RUNS_DIR=store, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {"load_average_1min_at_start": round(load, 2), "cpus": os.cpu_count()}
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.05)
        t_health = time.perf_counter()
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=FLAGS)
            pg = b.new_page(viewport={"width": 1024, "height": 768})
            t1 = time.perf_counter()
            pg.goto(url + "/?task=sst2")
            out["cold_first_page_parts"] = _drawn(pg, "SST-2: dev accuracy against sparsity", t1)
            t_first = time.perf_counter()
            out["server_start_s"] = round(t_health - t0, 2)
            out["first_page_after_server_s"] = round(t_first - t1, 2)
            out["cold_first_page_s"] = round(t_first - t0, 2)
            warm, parts = [], []
            for _ in range(3):
                tab = b.new_page(viewport={"width": 1024, "height": 768})
                t = time.perf_counter()
                tab.goto(url + "/?task=sst2")
                parts.append(_drawn(tab, "SST-2: dev accuracy against sparsity", t))
                warm.append(time.perf_counter() - t)
                tab.close()
            out["warm_first_page_s"] = [round(x, 2) for x in warm]
            out["warm_first_page_parts"] = parts
            switches = []
            for _ in range(2):
                for _key, option, name in TASKS:
                    pg.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
                    t = time.perf_counter()
                    pg.get_by_role("option", name=option).click()
                    pg.get_by_text(f"{name}: dev").first.wait_for(timeout=60_000)
                    _idle(pg)
                    switches.append(time.perf_counter() - t)
            out["task_switch_s"] = [round(x, 3) for x in switches]
            out["task_switch_median_s"] = round(statistics.median(switches), 3)
            out["task_switch_max_s"] = round(max(switches), 3)
            b.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(store, ignore_errors=True)
    out["targets"] = {"cold_first_page_s": 5.0, "task_switch_s": 0.5}
    (ROOT / "bench" / "browser_timing.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"load average at start {out['load_average_1min_at_start']} on {out['cpus']} CPUs")
    print(f"server start {out['server_start_s']} s; cold first page {out['cold_first_page_s']} s (target < 5); "
          f"first page after the server answered {out['first_page_after_server_s']} s")
    print(f"  of which: the title after {out['cold_first_page_parts']['title_s']} s, the charts after "
          f"{out['cold_first_page_parts']['charts_s']} s (from opening the address)")
    print(f"warm first page (new tab) {out['warm_first_page_s']} s; title and charts after "
          f"{[(p['title_s'], p['charts_s']) for p in out['warm_first_page_parts']]} s")
    print(f"task switch median {out['task_switch_median_s']} s, max {out['task_switch_max_s']} s (target < 0.5) "
          f"over {len(out['task_switch_s'])} switches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
