"""KASP's layers (docs/architecture.md) as import-linter contracts (`.importlinter`), over every module.

`lint-imports` from the repository root prints the same report.
"""
import configparser

import pytest

from tests.helpers import ROOT

LAYERS = ["kasp.cli", "kasp.ui", "kasp.experiments", "kasp.analysis", "kasp.training", "kasp.core", "kasp.models",
          "kasp.data", "kasp.spec", "kasp.ground"]


def _config() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return cfg


def test_the_import_contracts_hold(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the contracts name the package; it is imported from the repository
    """Layers import only downwards; the engine imports no Streamlit, plotly, bertviz or app-support module;
    ground and spec import no torch; no cycle among the modules of any package."""
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    rc = lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True, no_logo=True, is_debug_mode=True)
    out = capsys.readouterr().out
    assert "Contracts: 4 kept, 0 broken." in out, out[-3000:]
    assert rc == 0


def test_every_module_lives_in_a_layer_the_contract_names():
    """A new sub-package or a module left at the top of kasp/ would escape the layer contract."""
    layers = [line.strip() for line in _config()["importlinter:contract:layers"]["layers"].split("\n") if line.strip()]
    assert layers == LAYERS
    top = sorted(p.name for p in (ROOT / "kasp").iterdir()
                 if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))
    allowed = {"__init__.py", "__main__.py", "cli.py"} | {name.split(".")[1] for name in LAYERS[1:]}
    assert set(top) <= allowed, f"not in a layer: {sorted(set(top) - allowed)}"
    assert set(top) >= allowed - {"__main__.py"}
