"""Build step that ships the app and its data: everything else is configured in pyproject.toml.

The repository keeps ``app.py``, ``pages/``, ``assets/`` and ``data/glue/`` at its top level, where
a reader looks for them; the root is not a Python package. Building a wheel (``pip wheel .``,
``pip install .``), this copies the files listed in ``SHIPPED`` of kasp/ground/resources.py into the
package as ``kasp/_shipped/<name>/``, where :mod:`kasp.ground.resources` finds them; an editable install
(``pip install -e .``) copies nothing and reads them in the checkout. The same files go into an
sdist. The table is read from the source (not imported), so the build needs no dependency.
"""

import ast
import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _shipped_table() -> dict:
    """``SHIPPED`` of kasp/ground/resources.py (wherever under kasp/ that module sits), read with ast."""
    for path in sorted(glob.glob(os.path.join(HERE, "kasp", "**", "resources.py"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "SHIPPED" for t in targets):
                    return ast.literal_eval(node.value)
    raise RuntimeError("no SHIPPED table in kasp/**/resources.py: the wheel would lack the app and its data")


def shipped_files() -> list[tuple[str, str]]:
    """(source path relative to the repository, destination relative to the package root) pairs."""
    pairs = []
    for name, (folder, patterns) in _shipped_table().items():
        for pattern in patterns:
            for src in sorted(glob.glob(os.path.join(HERE, folder, pattern))):
                if os.path.isfile(src):
                    rel = os.path.relpath(src, os.path.join(HERE, folder))
                    pairs.append((os.path.relpath(src, HERE), os.path.join("kasp", "_shipped", name, rel)))
    return pairs


class BuildPyShipped(build_py):
    """``build_py`` that also copies the shipped files (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them in the checkout
        for src, dst in shipped_files():
            target = os.path.join(self.build_lib, dst)
            self.mkpath(os.path.dirname(target))
            self.copy_file(os.path.join(HERE, src), target)

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), *(src for src, _ in shipped_files())]


setup(cmdclass={"build_py": BuildPyShipped})
