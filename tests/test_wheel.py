"""The wheel carries everything KASP needs: built here, installed into a fresh virtual environment
outside the repository, where `kasp evaluate` runs on the shipped GLUE data, every page of the
shipped app opens with AppTest and `kasp app` serves the app.

The fresh environment gets KASP only from the wheel (installed with --no-deps --no-index); its
third-party dependencies (torch, transformers, streamlit, ...) are made visible through a .pth line
pointing at this environment's site-packages, so nothing is downloaded or installed twice. A .pth
line adds a path but does not run the .pth files found there, so the editable install of the
checkout stays invisible: the test checks that kasp, its data and its app come from the fresh
environment.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PAGES_SCRIPT = r"""
import json, sys
from streamlit.testing.v1 import AppTest
import kasp
from kasp.ground.resources import app_script, glue_dir, precomputed_path

app = app_script()
out = {"kasp": kasp.__file__, "app": str(app), "glue": str(glue_dir()), "precomputed": str(precomputed_path()), "pages": {}}
at = AppTest.from_file(str(app), default_timeout=180)
at.run()
out["pages"]["app.py"] = {"exceptions": [e.message for e in at.exception], "elements": len(at.sidebar.selectbox)}
for page in sorted((app.parent / "pages").glob("*.py")):
    if page.name.startswith("_"):
        continue
    at = AppTest.from_file(str(page), default_timeout=180)
    at.session_state["task"] = "sst2"
    at.session_state["model"] = "default"
    at.run()
    out["pages"][page.name] = {"exceptions": [e.message for e in at.exception],
                               "elements": len(at.title) + len(at.header) + len(at.markdown)}
print("RESULT " + json.dumps(out))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path, tiny_store):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KASP_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")

    # 1. build the wheel from a copy of the checkout (setuptools writes build/ into the source tree;
    # no build isolation: offline, with this environment's setuptools)
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                                                            "__pycache__", ".pytest_cache", "_screenshots", "_work"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
         cwd=tmp_path, env=env)
    (wheel,) = dist.glob("kasp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("kasp/app/app.py", "kasp/app/.streamlit/config.toml", "kasp/app/pages/overview.py",
                    "kasp/glue/SST-2/dev.tsv", "kasp/glue/SST-2/train.tsv", "kasp/assets/precomputed/runs.json",
                    "kasp/assets/vendor/d3-5.7.0.min.js", "kasp/assets/kasp_diagram.svg", "kasp/recipes/paper-mrpc.json"):
        assert shipped in names, f"{shipped} is not in the wheel"
    for page in (ROOT / "pages").glob("*.py"):
        assert f"kasp/app/pages/{page.name}" in names
    assert not any(n.startswith(("kasp/app/tests/", "kasp/app/kasp/", "kasp/assets/screenshots/")) for n in names)

    # 2. a fresh environment outside the repository; KASP from the wheel only
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         cwd=tmp_path, env=env)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path,
                     env=env).stdout.strip())
    (site / "_kasp_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # 3. kasp evaluate on the shipped SST-2 dev set, from a directory that is not the repository
    work = tmp_path / "work"
    work.mkdir()
    store = work / "runs"
    shutil.copytree(tiny_store, store)
    out = _run([str(venv / "bin" / "kasp"), "evaluate", str(store / "teacher"), "--task", "sst2",
                "--max-eval-samples", "48", "--json"], cwd=work, env=env)
    res = json.loads(out.stdout)
    assert res["metrics"]["n"] == 48
    from kasp.training.evaluate import evaluate_checkpoint

    here = evaluate_checkpoint(str(store / "teacher"), "sst2", None, 48, 128, 64)
    assert res["metrics"] == pytest.approx(here["metrics"])  # the same data and code give the same metric

    # 4. every page of the installed app opens with AppTest
    env_app = dict(env, KASP_RUNS_DIR=str(store))
    out = _run([str(py), "-c", _PAGES_SCRIPT], cwd=work, env=env_app)
    info = json.loads(out.stdout.split("RESULT ", 1)[1])
    for key in ("kasp", "app", "glue", "precomputed"):
        assert Path(info[key]).resolve().is_relative_to(site.resolve()), (key, info[key])
    assert set(info["pages"]) == {"app.py"} | {p.name for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_")}
    for page, r in info["pages"].items():
        assert r["exceptions"] == [], (page, r["exceptions"])
        assert r["elements"] > 0, page

    # 5. `kasp app` serves the installed app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(venv / "bin" / "kasp"), "app", "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1"], cwd=work, env=env_app,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(1)
        assert health == "ok", proc.stdout.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()  # `kasp app` exec'd streamlit: the signal reaches the server itself
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
