"""Files that ship with KASP: GLUE data, precomputed runs, recipes, vendored JavaScript, the app.

In the repository these files stay where a reader expects them (``data/glue/``, ``assets/``,
``pages/``, ``app.py``): the repository root is not a Python package. Building the wheel,
``setup.py`` copies them into the package as ``kasp/_shipped/<name>/``, following :data:`SHIPPED`,
the one table of what ships; recipes are ordinary package data (``kasp/recipes/``):

==========  ===================  ============================================  =============================
name        repository folder    files (globs under that folder)               read by
==========  ===================  ============================================  =============================
``app``     repository root      ``app.py``, ``.streamlit/config.toml``,       :func:`app_script`
                                 ``pages/*.py``
``assets``  ``assets/``          precomputed runs, diagram, vendored JS,       :func:`asset`, ...
                                 shipped sweeps, shipped models (``models/``,
                                 :mod:`kasp.models.shipped`; not ``screenshots/``)
``glue``    ``data/glue/``       GLUE train/dev TSV files                      :func:`glue_dir`
==========  ===================  ============================================  =============================

Every function here finds a file the same way (:func:`shipped_dir`): in an installed wheel, under
``kasp/_shipped/``; in a checkout (``pip install -e .``, or ``python -m kasp`` run from it), in
the repository folder itself. To ship a new kind of file, put it under one of these folders, add
its glob to :data:`SHIPPED` and, if code reads it, add one function here (see
docs/packaging.md, "The shipped files").
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from kasp.ground.errors import KaspError

#: name -> (repository folder relative to the root, globs of the files the wheel carries from it);
#: setup.py copies them to ``kasp/_shipped/<name>/`` (the same relative paths).
SHIPPED: dict[str, tuple[str, tuple[str, ...]]] = {
    "app": (".", ("app.py", ".streamlit/config.toml", "pages/*.py")),
    "assets": ("assets", ("*.svg", "favicon.png", "precomputed/*", "vendor/*", "sweeps/*.json", "sweeps/gpu/*.json",
                          "models/manifest.json", "models/*/*/*.json", "models/*/*/*.jsonl", "models/*/*/compact/*")),
    "glue": ("data/glue", ("*/*.tsv",)),
}
#: the folder of the installed package that holds the shipped files (a wheel only; not in the repository)
SHIPPED_FOLDER = "_shipped"


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


def _checkout_root() -> Path | None:
    """The repository root when ``kasp`` is imported from a checkout (its parent holds
    pyproject.toml and app.py), else None."""
    root = _package_dir("kasp").parent
    return root if (root / "pyproject.toml").is_file() and (root / "app.py").is_file() else None


def shipped_dir(name: str) -> Path:
    """The folder of the shipped files called ``name`` in :data:`SHIPPED` ("app", "assets", "glue").

    ``kasp/_shipped/<name>`` of an installed wheel, else the repository folder of a checkout.

    Raises:
        KaspError: unknown name, or neither place exists (a build that skipped setup.py's copy).
    """
    if name not in SHIPPED:
        raise KaspError(f"unknown shipped folder {name!r}: one of {', '.join(SHIPPED)}")
    installed = _package_dir("kasp") / SHIPPED_FOLDER / name
    if installed.is_dir():
        return installed
    root = _checkout_root()
    if root is not None:
        return (root / SHIPPED[name][0]).resolve()
    raise KaspError(f"KASP's shipped files ({name}) are missing from {installed.parent}; reinstall KASP "
                    "(pip install . from the repository, or the wheel)")


def _shipped(name: str, *parts: str) -> Path:
    p = shipped_dir(name).joinpath(*parts)
    if not p.exists():
        raise KaspError(f"shipped file {'/'.join(parts)} is missing from {shipped_dir(name)}; reinstall KASP "
                        "(pip install . from the repository, or the wheel)")
    return p


def glue_dir() -> Path:
    """The shipped GLUE folder (``<TASK>/train.tsv``, ``dev.tsv``); ``$KASP_DATA_DIR`` overrides it."""
    from kasp.ground import settings

    return settings.get().data_dir or shipped_dir("glue")


def assets_dir() -> Path:
    """The shipped assets folder (repository ``assets/``)."""
    return shipped_dir("assets")


def asset(name: str) -> Path:
    """A shipped asset file by its path under ``assets/``, e.g. ``asset("kasp_diagram.svg")``.

    Raises:
        KaspError: if it is not shipped (not matched by the ``assets`` globs of :data:`SHIPPED`).
    """
    return _shipped("assets", *name.split("/"))


def precomputed_path(name: str = "runs.json") -> Path:
    """A file of shipped precomputed results (``assets/precomputed/<name>``); it need not exist yet
    (a maintainer's script writes it)."""
    return assets_dir() / "precomputed" / name


def vendor_js(name: str) -> Path:
    """A vendored JavaScript library (``assets/vendor/<name>``, licences beside it)."""
    return _shipped("assets", "vendor", name)


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
    return _shipped("app", "app.py")
