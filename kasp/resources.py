"""Files that ship with KASP: GLUE data, precomputed runs, recipes, vendored JavaScript, the app.

Every shipped file is found through :mod:`importlib.resources`, so the same call works from a
checkout (``pip install -e .``) and from a wheel. In the repository the files stay where a reader
expects them (``data/glue/``, ``assets/``, ``pages/``, ``app.py``); ``pyproject.toml`` maps those
folders into the package (``[tool.setuptools.package-dir]``):

=================  ===================  ==========================================
package             repository folder    what
=================  ===================  ==========================================
``kasp.glue``       ``data/glue/``       GLUE train/dev TSV files (:func:`glue_dir`)
``kasp.assets``     ``assets/``          precomputed runs, diagram, vendored JS
``kasp.recipes``    ``kasp/recipes/``    shipped recipes (:func:`recipe_path`)
``kasp.app``        repository root      ``app.py`` (:func:`app_script`)
``kasp.app.pages``  ``pages/``           the app's pages
=================  ===================  ==========================================

To ship a new kind of file, put it under one of these folders, add its glob to
``[tool.setuptools.package-data]`` in ``pyproject.toml`` and, if code reads it, add one function
here (see docs/architecture.md, "Shipped files").
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from kasp.errors import KaspError


def _package_dir(package: str) -> Path:
    """The directory of an installed package, as a real path.

    Raises:
        KaspError: if the package is not on the file system (e.g. imported from a zip file).
    """
    root = files(package)
    if not isinstance(root, Path):
        raise KaspError(f"KASP's shipped files ({package}) are not on the file system ({root!r}); "
                        "install KASP with pip into a normal (unzipped) environment")
    return root


def _shipped(package: str, *parts: str) -> Path:
    p = _package_dir(package).joinpath(*parts)
    if not p.exists():
        raise KaspError(f"shipped file {'/'.join(parts)} is missing from {package}; reinstall KASP "
                        "(pip install . from the repository, or the wheel)")
    return p


def glue_dir() -> Path:
    """The shipped GLUE folder (``<TASK>/train.tsv``, ``dev.tsv``); ``$KASP_DATA_DIR`` overrides it."""
    from kasp import settings

    return settings.get().data_dir or _package_dir("kasp.glue")


def assets_dir() -> Path:
    """The shipped assets folder (repository ``assets/``)."""
    return _package_dir("kasp.assets")


def asset(name: str) -> Path:
    """A shipped asset file by its path under ``assets/``, e.g. ``asset("kasp_diagram.svg")``.

    Raises:
        KaspError: if it is not shipped (not in the package data globs of pyproject.toml).
    """
    return _shipped("kasp.assets", *name.split("/"))


def precomputed_path(name: str = "runs.json") -> Path:
    """A file of shipped precomputed results (``assets/precomputed/<name>``); it need not exist yet
    (a maintainer's script writes it)."""
    return assets_dir() / "precomputed" / name


def vendor_js(name: str) -> Path:
    """A vendored JavaScript library (``assets/vendor/<name>``, licences beside it)."""
    return _shipped("kasp.assets", "vendor", name)


def recipes_dir() -> Path:
    """The folder of shipped recipes (``kasp/recipes/*.json``)."""
    return _package_dir("kasp") / "recipes"


def recipe_names() -> list[str]:
    """Names of the shipped recipes (file stems), sorted."""
    return sorted(p.stem for p in recipes_dir().glob("*.json"))


def recipe_path(name: str) -> Path | None:
    """The shipped recipe ``name`` (without ``.json``), or None if there is none."""
    p = recipes_dir() / f"{name}.json"
    return p if p.is_file() else None


def app_script() -> Path:
    """The Streamlit entry script (repository ``app.py``); its pages are in ``pages/`` beside it."""
    return _shipped("kasp.app", "app.py")
