"""Pages only lay out (issue 27, item 5): what the app calls lives in the app-support layer, kasp/ui/.

Every ``kasp`` import of ``app.py`` and ``pages/*.py`` comes from ``kasp.ui`` (or ``kasp.ground.errors`` for
``KaspError`` and ``os_error_message``); what the app takes from lower layers is named in
``kasp/ui/engine.py`` (torch-free) and ``kasp/ui/measure.py`` (the calls that load a model). The app's
tables, curves and the other app-support modules the sidebar and the light pages import load no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

#: the app's scripts: the entry point and its pages
APP_SCRIPTS = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
#: the one module below kasp.ui a page may import from directly
ALLOWED_BELOW_UI = frozenset({"kasp.ground.errors"})
#: app-support modules that must import no torch (kasp.ui.measure and kasp.ui.uploads run models;
#: kasp.ui.attention_view reads a model's attention)
TORCH_FREE = ("tables", "curves", "devset", "checks", "launch", "session", "presets", "downloads", "engine",
              "figures", "figures_live", "figures_weights", "stories", "style", "urlstate")


def _kasp_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``kasp`` module in a script, at any depth (functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "kasp"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "kasp":
            if node.module == "kasp":  # `from kasp import ui` is kasp.ui; `from kasp import x` is not
                found += [(node.lineno, f"kasp.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _allowed(module: str) -> bool:
    return module == "kasp.ui" or module.startswith("kasp.ui.") or module in ALLOWED_BELOW_UI


@pytest.mark.parametrize("script", APP_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_app_imports_kasp_only_through_the_app_support_layer(script):
    bad = [f"{script.relative_to(ROOT)}:{line} imports {mod}" for line, mod in _kasp_imports(script) if not _allowed(mod)]
    assert not bad, ("pages only lay out: take it from kasp.ui (a table or curve in its module there, an engine "
                     "name through kasp/ui/engine.py or kasp/ui/measure.py):\n" + "\n".join(bad))


def test_the_check_sees_what_it_forbids(tmp_path):
    """The AST walk finds imports at any depth and in every form, so the test above cannot pass vacuously."""
    script = tmp_path / "page.py"
    script.write_text("import kasp.data.glue\nfrom kasp import ui, cli\nfrom kasp.ground.errors import KaspError\n"
                      "def f():\n    from kasp.experiments import jobs\n", encoding="utf-8")
    assert [m for _, m in _kasp_imports(script) if not _allowed(m)] == ["kasp.data.glue", "kasp.cli",
                                                                        "kasp.experiments"]


@pytest.mark.slow  # starts a Python process
def test_the_apps_tables_and_curves_import_no_torch():
    """The tables, curves and the other app-support modules the sidebar imports load no torch (reading the
    GLUE files goes through kasp.data.glue, which imports torch, only when a function reads them)."""
    modules = ", ".join(f"kasp.ui.{m}" for m in TORCH_FREE)
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
