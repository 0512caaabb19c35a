"""kasp.ground.settings: every environment variable is read there, at the call, and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kasp.ground import settings
from kasp.ground.errors import KaspError

from tests.helpers import ROOT


def _env_reads(path: Path) -> list[str]:
    """``file:line name`` of each read of a named environment variable: ``os.environ["X"]`` (not as an
    assignment target), ``os.environ.get("X")``, ``os.getenv("X")`` (also ``environ``/``getenv`` imported
    from os). Writes (``os.environ["X"] = ...``, ``setdefault``) and copies (``dict(os.environ)``) pass."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
               (isinstance(node, ast.Name) and node.id == "environ")

    def literal(node: ast.AST | None) -> str:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "<computed>"

    out = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            name = literal(node.slice)
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("get", "pop") and is_environ(f.value):
                name = literal(node.args[0])
            elif getattr(f, "attr", None) == "getenv" or getattr(f, "id", None) == "getenv":
                name = literal(node.args[0])
        if name is not None:
            out.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return out


def test_only_settings_reads_the_environment():
    """No module of the package, the app or its pages reads an environment variable itself (KASP_* or any
    other): each goes through kasp.ground.settings.get(), whose table documents it."""
    files = [*sorted((ROOT / "kasp").rglob("*.py")), ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    reads = [r for f in files if f.name != "settings.py" or f.parent.name != "ground" for r in _env_reads(f)]
    assert reads == [], f"read the environment through kasp.ground.settings.get() instead: {reads}"
    # and the scanner does find a read (it would pass vacuously otherwise)
    assert _env_reads(ROOT / "kasp" / "ground" / "settings.py")


def test_every_variable_is_in_the_table():
    doc = settings.__doc__
    for name in settings.NAMES:
        assert f"``{name}``" in doc, name


def test_defaults(monkeypatch, tmp_path):
    for name in settings.NAMES:
        monkeypatch.delenv(name, raising=False)
    s = settings.get()
    assert s.runs_dir == Path("runs") and s.data_dir is None and s.cache_dir == Path.home() / ".cache" / "kasp"
    assert s.uploads_dir.name == "kasp-uploads"
    assert (s.max_jobs, s.max_queued, s.operator, s.operator_key) == (1, 2, False, None)
    assert s.fused_adamw and not s.hub_offline and not s.datasets_offline and s.main_process
    assert not s.accelerate_use_cpu


def test_read_at_each_call(monkeypatch, tmp_path):
    """A change of the environment after import (as tests and `--runs-dir` make) is seen by the next call."""
    from kasp.experiments import jobs
    from kasp.ground.runs import runs_dir

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("KASP_MAX_JOBS", "3")
    assert runs_dir() == tmp_path / "a" and jobs.max_jobs() == 3
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("KASP_MAX_JOBS", "0")
    monkeypatch.setenv("KASP_FUSED_ADAMW", "0")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("RANK", "2")
    s = settings.get()
    assert runs_dir() == tmp_path / "b" and jobs.max_jobs() == 0
    assert not s.fused_adamw and s.accelerate_use_cpu and not s.main_process


def test_empty_values_keep_their_old_meaning(monkeypatch):
    monkeypatch.setenv("KASP_OPERATOR_KEY", "")  # set but empty: a key too short, not "no key"
    monkeypatch.setenv("KASP_FUSED_ADAMW", "")  # anything but 1 turns fused AdamW off
    monkeypatch.setenv("KASP_CACHE_DIR", "")  # empty: the default folder
    s = settings.get()
    assert s.operator_key == "" and not s.fused_adamw and s.cache_dir == Path.home() / ".cache" / "kasp"


@pytest.mark.parametrize("name", ["KASP_MAX_JOBS", "KASP_MAX_QUEUED", "RANK"])
def test_a_number_that_is_not_one(monkeypatch, name):
    monkeypatch.setenv(name, "two")
    with pytest.raises(KaspError, match=f"{name} must be a whole number"):
        settings.get()


def test_the_default_cache_follows_home(monkeypatch, tmp_path):
    monkeypatch.delenv("KASP_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    assert settings.get().cache_dir == tmp_path / "a" / ".cache" / "kasp"
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    assert settings.get().cache_dir == tmp_path / "b" / ".cache" / "kasp"
