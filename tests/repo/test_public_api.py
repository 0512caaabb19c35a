"""The public API of ``import kasp``, the README's Trainer example run against a tiny model, and the
engine without the app's extra (kasp[app]: streamlit, plotly, bertviz) made unimportable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

#: where the Trainer example lives (README.md today; docs/scale-out.md once the docs are split)
EXAMPLE_FILES = ("README.md", "docs/scale-out.md")
APP_EXTRA = ("streamlit", "plotly", "bertviz")


def _python(code: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})


def test_import_kasp_is_cheap_and_every_public_name_resolves():
    r = _python("import sys, kasp; print(sorted(m for m in ('torch', 'transformers', 'pandas', 'streamlit', 'plotly') "
                "if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"  # nothing heavy until a name is used

    import kasp

    for name in kasp.__all__:
        assert getattr(kasp, name) is not None, name
    assert {"RunConfig", "train", "KaspTrainer", "KaspPruningCallback", "load_sparse", "KaspError", "__version__",
            "KaspLoss", "MagnitudePruner", "cubic_sparsity"} <= set(kasp.__all__)
    from kasp.spec.config import RunConfig
    from kasp.training.hf_trainer import KaspTrainer
    from kasp.training.train import train

    assert kasp.RunConfig is RunConfig and kasp.KaspTrainer is KaspTrainer
    assert kasp.train is train  # the function, not its module (kasp/training/train.py)
    assert kasp.cubic_sparsity(10, 10, 0.9) == pytest.approx(0.9)
    with pytest.raises(AttributeError):
        kasp.no_such_name  # noqa: B018


def trainer_example() -> tuple[str, str]:
    """(file, code) of the Trainer example: the python block that builds a ``kasp.KaspTrainer``."""
    for name in EXAMPLE_FILES:
        p = ROOT / name
        if p.is_file():
            for block in re.findall(r"```python\n(.*?)```", p.read_text(encoding="utf-8"), flags=re.S):
                if "kasp.KaspTrainer(" in block:
                    return name, block
    raise AssertionError(f"no ```python block with kasp.KaspTrainer( in {' or '.join(EXAMPLE_FILES)}")


@pytest.mark.slow
def test_readme_trainer_example_runs_on_a_tiny_model(tmp_path, tiny_store, tiny_pretrained):
    where, code = trainer_example()
    assert "from kasp." not in code and "import kasp\n" in code, f"{where}: the example uses the public API only"
    # the example as written, on the tests' tiny models and a few steps (each edit must apply exactly once)
    edits = {'model="default"': f"model={str(tiny_pretrained)!r}",
             '"runs/<teacher id>"': repr(str(tiny_store / "teacher")),
             '"hf-out"': repr(str(tmp_path / "hf-out")),
             "max_steps=200": "max_steps=6",
             "max_train_samples=2000": "max_train_samples=96",
             "per_device_train_batch_size=32": "per_device_train_batch_size=16"}
    for old, new in edits.items():
        assert code.count(old) == 1, f"{where}: the Trainer example no longer contains {old} once"
        code = code.replace(old, new)
    scope: dict = {}
    exec(compile(code, f"<{where}: Trainer example>", "exec"), scope)
    from kasp.core.masks import sparsity_summary

    assert scope["trainer"].state.global_step == 6
    assert sparsity_summary(scope["student"])["pruned_sparsity"] == pytest.approx(0.9, abs=1e-3)


@pytest.mark.slow
def test_load_sparse_reads_a_run_a_checkpoint_and_a_sparse_export(tmp_path, tiny_store):
    import torch

    import kasp
    from kasp.models.export import export_sparse

    run = tiny_store / "teacher"
    export_sparse(run, tmp_path / "sparse")
    batch = None
    logits = []
    for path in (run, run / "checkpoint", tmp_path / "sparse"):
        model, tok = kasp.load_sparse(path, "sst2")
        assert not model.training
        batch = batch or tok(["a fine film", "dull"], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits.append(model(**batch).logits)
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    with pytest.raises(kasp.KaspError):
        kasp.load_sparse(tmp_path / "nothing-here", "sst2")


# Runs in a fresh interpreter where the app's packages cannot be imported, as in an environment
# installed without kasp[app] (`sys.modules[name] = None` is how Python marks a module as absent).
_NO_APP = r"""
import json, sys
for name in ("streamlit", "plotly", "bertviz"):
    sys.modules[name] = None
from kasp.cli import main
args = json.loads(sys.argv[1])
codes = [main(a) for a in args]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("streamlit", "plotly", "bertviz") and sys.modules[m] is not None)
print("RESULT " + json.dumps({"codes": codes, "loaded": loaded}))
"""


@pytest.mark.slow
def test_engine_commands_run_without_the_app_extra(tmp_path, tiny_store, tiny_pretrained):
    store = tmp_path / "runs"
    import shutil

    shutil.copytree(tiny_store, store)
    teacher = str(store / "teacher")
    commands = [["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--teacher", teacher, "--sparsity", "0.5",
                 "--max-steps", "4", "--max-train-samples", "64", "--max-eval-samples", "32", "--eval-every", "4",
                 "--runs-dir", str(store), "--out", str(store / "student"), "--no-progress"],
                ["evaluate", teacher, "--task", "sst2", "--max-eval-samples", "16", "--json"],
                ["inspect", str(store / "student"), "--json"],
                ["export", str(store / "student"), str(tmp_path / "sparse"), "--format", "sparse"],
                ["runs", "--runs-dir", str(store)],
                ["app"]]
    r = subprocess.run([sys.executable, "-c", _NO_APP, json.dumps(commands)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert "RESULT " in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert res["codes"] == [0, 0, 0, 0, 0, 2], r.stderr[-3000:]  # every engine command; `kasp app` refuses
    assert res["loaded"] == []
    assert "kasp app needs streamlit, which is not installed: install kasp[app]" in r.stderr
    report = json.loads((store / "student" / "report.json").read_text())
    assert report["sparsity"]["pruned_sparsity"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow
def test_engine_modules_do_not_import_the_app_packages():
    """Importing every engine module (all but the app's own: figures*, urlstate, lesson) loads none of the
    app's packages; the app-side modules are the only ones that need kasp[app]."""
    code = ("import pkgutil, importlib, sys, kasp\n"
            "app_side = {'figures', 'figures_live', 'figures_weights', 'urlstate', 'lesson', '__main__'}\n"
            "names = [m.name for m in pkgutil.walk_packages(kasp.__path__, 'kasp.') "
            "if m.name.split('.')[-1] not in app_side]\n"
            "[importlib.import_module(n) for n in names]\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'streamlit', 'plotly', 'bertviz', "
            "'onnx', 'onnxruntime'}))")
    r = _python(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
