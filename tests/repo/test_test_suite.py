"""The test suite's own shape: one folder per layer (docs/architecture.md, "Tests"), each a package, and no
test module importing another (shared fixtures live in tests/conftest.py, plain helpers in tests/helpers.py)."""

from __future__ import annotations

import ast
import tomllib

from tests.helpers import ROOT

TESTS = ROOT / "tests"
FOLDERS = {"ground", "spec", "data", "models", "core", "training", "analysis", "experiments", "ui", "cli", "repo"}


def _imported_modules(path) -> list[str]:
    """Every module name ``path`` imports (absolute names; a relative import as ``.name``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.append(base)
            if not node.module:  # from . import test_x
                names += [base + a.name for a in node.names]
    return names


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def test_no_test_module_imports_another_test_module():
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted(TESTS.rglob("*.py"))
                 for m in _imported_modules(p) if _is_test_module(m)]
    assert not offenders, "import shared code from tests/helpers.py (or use a fixture from conftest.py):\n" + \
        "\n".join(offenders)


def test_the_check_catches_every_spelling_of_a_test_import(tmp_path):
    f = tmp_path / "test_probe.py"
    f.write_text("import test_a\nfrom test_b import x\nfrom tests.ui.test_c import y\nfrom . import test_d\n"
                 "from .test_e import z\nfrom conftest import w\nimport tests.helpers\n")
    assert [m for m in _imported_modules(f) if _is_test_module(m)] == \
        ["test_a", "test_b", "tests.ui.test_c", ".test_d", ".test_e", "conftest"]


def test_tests_sit_in_the_layer_folders_each_a_package():
    stray = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not stray, f"put these in the folder of the layer they test: {stray}"
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders == FOLDERS
    assert (TESTS / "__init__.py").is_file() and all((TESTS / d / "__init__.py").is_file() for d in FOLDERS)
    pytest_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "pythonpath" not in pytest_cfg  # tests import the helpers as the package tests.helpers
