"""Opening checkpoints from untrusted sources: zip uploads and loose file pairs.

Every check raises :class:`KaspError` with a message that names the problem and the fix, and
nothing is written outside the target directory: entries with ``..``, absolute paths, drive
letters or links are refused before anything is extracted; the entry count, each entry's size,
the total unpacked size and the compression ratio are capped (zip bombs), and the byte count is
enforced while extracting, whatever the headers claim. Pickle weights are refused by
:func:`kasp.models.modeling.check_checkpoint_dir`.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from kasp.ground.errors import KaspError
from kasp.models.modeling import check_checkpoint_dir

MAX_UPLOAD_BYTES = 1 << 30          # 1 GiB compressed
MAX_UNPACKED_BYTES = 2 << 30        # 2 GiB in all
MAX_ENTRIES = 200
MAX_RATIO = 200                     # unpacked / compressed, per entry (weights compress ~1.1x)
ALLOWED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".md")


def _safe_member(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    p = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in p.parts:
        raise KaspError(f"refused zip entry {info.filename!r}: absolute or parent-directory paths are not allowed")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise KaspError(f"refused zip entry {info.filename!r}: links are not allowed")
    return p


def extract_checkpoint_zip(data: bytes | str | Path, target: str | Path,
                           max_unpacked: int = MAX_UNPACKED_BYTES) -> Path:
    """Extract an uploaded checkpoint zip into ``target`` (which must not exist) and return the
    checkpoint directory inside it (the folder holding config.json).

    Raises:
        KaspError: not a zip; too large; unsafe entry; pickle weights or no safetensors file;
            no config.json. On any error ``target`` is removed again.
    """
    target = Path(target)
    if target.exists():
        raise KaspError(f"{target} already exists")
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    if len(raw) > MAX_UPLOAD_BYTES:
        raise KaspError(f"the upload is {len(raw) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise KaspError("the upload is not a valid .zip file") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_ENTRIES:
            raise KaspError(f"the zip has {len(infos)} files; a checkpoint needs a handful (limit {MAX_ENTRIES})")
        total = 0
        for info in infos:
            _safe_member(info)
            total += info.file_size
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1 << 20:
                raise KaspError(f"refused zip entry {info.filename!r}: compression ratio "
                                f"{info.file_size / info.compress_size:.0f}:1 looks like a zip bomb")
        if total > max_unpacked:
            raise KaspError(f"the zip unpacks to {total / 1e6:.0f} MB; the limit is {max_unpacked / 1e6:.0f} MB")
        pickles = [i.filename for i in infos if i.filename.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
        if pickles and not any(i.filename.endswith(".safetensors") for i in infos):
            raise KaspError(f"the zip holds pickle weights ({', '.join(pickles)}); KASP never unpickles uploads. "
                            "Convert them where you trust the file: load with transformers and call "
                            "model.save_pretrained(dir), which writes safetensors.")
        target.mkdir(parents=True)
        try:
            written = 0
            root = target.resolve()
            for info in infos:
                p = _safe_member(info)
                if not p.name.endswith(ALLOWED_SUFFIXES):
                    continue  # ignore anything a checkpoint does not need (pickles included)
                dest = (target / p).resolve()
                if root not in dest.parents:
                    raise KaspError(f"refused zip entry {info.filename!r}: it points outside the target directory")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_unpacked:
                            raise KaspError(f"the zip unpacks to more than {max_unpacked / 1e6:.0f} MB (its headers lied)")
                        out.write(chunk)
            configs = sorted(target.rglob("config.json"), key=lambda q: len(q.parts))
            if not configs:
                raise KaspError("the zip has no config.json: zip the checkpoint directory written by save_pretrained")
            ckpt = configs[0].parent
            check_checkpoint_dir(ckpt)
            return ckpt
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


def save_file_pair(files: dict[str, bytes], target: str | Path) -> Path:
    """Write an uploaded ``config.json`` + ``*.safetensors`` (+ optional tokenizer files) into ``target``.

    Raises:
        KaspError: missing config or weights, a pickle file, or an unexpected file name.
    """
    names = list(files)
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise KaspError("upload config.json together with the .safetensors weights (or a .zip of the directory)")
    bad = [n for n in names if Path(n).name != n or not n.endswith(ALLOWED_SUFFIXES)]
    if bad:
        raise KaspError(f"refused file(s) {bad}: only {', '.join(ALLOWED_SUFFIXES)} files of a checkpoint are accepted "
                        "(pickle weights never are)")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=False)
    for n, b in files.items():
        (target / n).write_bytes(b)
    try:
        check_checkpoint_dir(target)
    except KaspError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
