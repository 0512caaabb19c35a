"""Opening checkpoints from untrusted sources: zip uploads and loose file pairs.

Every check raises :class:`KaspError` with a message that names the problem and the fix, and
nothing is written outside the target directory: entries with ``..``, absolute paths, drive
letters or links are refused before anything is extracted; the entry count, each entry's size,
the total unpacked size and the compression ratio are capped (zip bombs), and the byte count is
enforced while extracting, whatever the headers claim. Pickle weights are refused by
:func:`kasp.models.modeling.check_checkpoint_dir`. What was written is then checked by
:func:`check_uploaded_checkpoint` (config.json a model's Hugging Face config, every safetensors file
complete), whose messages name the files as uploaded, never the cache's copy.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from kasp.ground.errors import KaspError
from kasp.models.modeling import SUPPORTED_MODEL_TYPES, check_checkpoint_dir

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
            check_uploaded_checkpoint(ckpt, target, "in the uploaded zip")
            return ckpt
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


def save_file_pair(files: dict[str, bytes], target: str | Path) -> Path:
    """Write an uploaded ``config.json`` + ``*.safetensors`` (+ optional tokenizer files) into ``target``.

    Raises:
        KaspError: missing config or weights, a pickle file, or an unexpected file name; anything
            :func:`check_uploaded_checkpoint` refuses (a config.json that is not a model's Hugging Face config,
            a weights file that is not complete safetensors). On any error ``target`` is removed again.
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
        check_uploaded_checkpoint(target, target, "uploaded")
    except KaspError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


_CONFIG_FIX = ("upload the config.json that save_pretrained wrote beside the weights (the model's Hugging Face config, "
               "with its model_type), not another JSON file")


def _weights_fix(name: str) -> str:
    return (f"upload the {name} written by save_pretrained, complete; download or copy it again if it was cut short "
            "(its size must match the original's)")


def check_uploaded_checkpoint(ckpt: Path, root: Path, where: str) -> None:
    """Check an uploaded checkpoint directory (written into the upload cache) before anything reads its weights,
    with messages that name the files as the user uploaded them, never the cache's copy, and say the fix.

    Checks config.json (JSON, an object, a supported ``model_type``: a model's Hugging Face config as
    ``save_pretrained`` writes it), then each ``*.safetensors`` file's header and length (the header is
    parsed and every tensor's byte range must cover the file exactly: a truncated or padded file, or one that
    is not safetensors at all, is refused; nothing is unpickled, no tensor is read), then
    :func:`kasp.models.modeling.check_checkpoint_dir` (pickle-only weights).

    Args:
        ckpt: the checkpoint directory (holding config.json); root: the upload's folder in the cache (names
            are shown relative to it); where: how the files are described, "uploaded" or "in the uploaded zip".

    Raises:
        KaspError: naming the uploaded file and the fix.
    """
    from safetensors import SafetensorError, safe_open

    def shown(f: Path) -> str:
        rel = f.relative_to(root).as_posix()
        return f"the uploaded {rel}" if where == "uploaded" else f"{rel} {where}"

    cfg_path = ckpt / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, nested too deeply
        raise KaspError(f"{shown(cfg_path)} is not valid JSON ({str(e)[:200]}): {_CONFIG_FIX}") from None
    if not isinstance(cfg, dict):
        raise KaspError(f"{shown(cfg_path)} holds a JSON {type(cfg).__name__}, not an object: {_CONFIG_FIX}")
    model_type = cfg.get("model_type")
    if model_type is None:
        raise KaspError(f"{shown(cfg_path)} has no model_type, so it is not a model's Hugging Face config (a "
                        f"tokenizer's or a training script's, perhaps): {_CONFIG_FIX}")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise KaspError(f"{shown(cfg_path)} is the config of a {str(model_type)[:40]!r} model; KASP prunes "
                        f"BERT-family encoders with BERT's layer layout ({', '.join(SUPPORTED_MODEL_TYPES)}): upload "
                        "such a model's files, saved with save_pretrained")
    for f in sorted(ckpt.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as opened:
                opened.keys()
        except (SafetensorError, OSError, ValueError) as e:
            raise KaspError(f"{shown(f)} is not a readable safetensors file ({str(e)[:200]}): it is truncated or "
                            f"corrupt, or not safetensors at all. Fix: {_weights_fix(f.name)}") from None
    try:
        check_checkpoint_dir(ckpt)
    except KaspError as e:
        raise KaspError(str(e).replace(str(ckpt), "the upload")) from None
