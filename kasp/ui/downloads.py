"""What the app offers for download: a run's checkpoint as a zip, plain files of the run only."""

from __future__ import annotations

from pathlib import Path

from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir


def checkpoint_zip(run: RunDir) -> bytes:
    """A run's checkpoint directory as a zip archive (files under ``<run id>/``), for the Results download.

    The checkpoint carries its model card (``README.md``) and the ``kasp`` block of ``config.json``
    (:mod:`kasp.training.card`); the run's ``report.json`` goes beside them as ``<run id>/report.json``.

    Only plain files go in: a link (to a file anywhere on the server, planted in a copied run) or a folder
    inside ``checkpoint/`` is left out, and a checkpoint folder that is itself a link is refused, so the
    download never carries a file from outside the run.

    Raises:
        KaspError: when the run has no checkpoint (not finished, or cancelled), or its checkpoint folder is a link.
    """
    import io
    import zipfile

    if not run.checkpoint.is_dir():
        raise KaspError(f"{run.id} has no checkpoint: only a finished run has one")
    if run.checkpoint.is_symlink():
        raise KaspError(f"{run.id}: its checkpoint folder is a link to elsewhere; it is not offered for download")

    def plain(p: Path) -> bool:
        return not p.is_symlink() and p.is_file()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(run.checkpoint.iterdir()):
            if plain(f):
                zf.write(f, arcname=f"{run.id}/{f.name}")
        if plain(run.path / "report.json") and not (run.checkpoint / "report.json").exists():
            zf.write(run.path / "report.json", arcname=f"{run.id}/report.json")
    return buf.getvalue()
