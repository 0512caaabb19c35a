"""Carry the default model to a GPU machine that has no network, inside the device tool's 64 MiB.

The device tool copies the working tree (about 25 MB) plus carried folders, 64 MiB in all; the default
model's fp32 weights are 91.6 MB. ``pack`` stores them as fp16 (the one lossy step: each weight rounded
to the nearest fp16, relative error at most 2^-11), splits each 16-bit value into its high bytes (sign,
exponent, top mantissa bits: low entropy) and low bytes, and compresses both planes with LZMA (Python's
standard library): about 35 MB, lossless with respect to the fp16 weights. ``unpack`` rebuilds a plain
Hugging Face checkpoint folder (fp16 safetensors, config, tokenizer) that ``--model`` takes.

    .venv/bin/python scripts/gpu_pack.py pack              # here: writes .gpu/model.pack (git-ignored)
    python3 scripts/gpu_pack.py unpack                     # there: writes .gpu/model/

The GPU sweep's results record that the model crossed as fp16 (``scripts/gpu_sweep.py``).
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAGIC = b"KASPPACK1"
_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def pack(model_dir: Path, out: Path) -> int:
    """Write ``out`` from a checkpoint folder with ``model.safetensors``; return its size in bytes."""
    import numpy as np
    from safetensors.numpy import load_file

    tensors = load_file(str(model_dir / "model.safetensors"))
    names = sorted(tensors)
    meta = {"tensors": [{"name": n, "shape": list(tensors[n].shape)} for n in names],
            "files": {f: (model_dir / f).read_text(encoding="utf-8") for f in _FILES if (model_dir / f).is_file()}}
    flat = np.concatenate([tensors[n].astype(np.float16).ravel() for n in names]) if names else np.zeros(0, np.float16)
    raw = flat.view(np.uint8).reshape(-1, 2)
    planes = raw[:, 1].tobytes() + raw[:, 0].tobytes()  # high bytes, then low bytes (little-endian fp16)
    blob = lzma.compress(planes, preset=6)
    head = json.dumps(meta).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(MAGIC + struct.pack("<QQ", len(head), flat.size) + head + blob)
    return out.stat().st_size


def unpack(pack_file: Path, out_dir: Path) -> Path:
    """Rebuild the checkpoint folder (fp16 ``model.safetensors`` and the config / tokenizer files).

    Raises:
        ValueError: a file that is not a pack of this format.
    """
    import numpy as np
    from safetensors.numpy import save_file

    data = pack_file.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{pack_file} is not a KASP model pack; make one with `scripts/gpu_pack.py pack`")
    n_head, n_values = struct.unpack("<QQ", data[len(MAGIC):len(MAGIC) + 16])
    start = len(MAGIC) + 16
    meta = json.loads(data[start:start + n_head])
    planes = np.frombuffer(lzma.decompress(data[start + n_head:]), dtype=np.uint8)
    raw = np.empty((n_values, 2), dtype=np.uint8)
    raw[:, 1], raw[:, 0] = planes[:n_values], planes[n_values:]
    flat = raw.reshape(-1).view(np.float16)
    tensors, pos = {}, 0
    for t in meta["tensors"]:
        k = int(np.prod(t["shape"])) if t["shape"] else 1
        tensors[t["name"]] = flat[pos:pos + k].reshape(t["shape"]).copy()
        pos += k
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name, text in meta["files"].items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("--model", default=None, help="pack: the checkpoint folder (default: the shipped default model)")
    ap.add_argument("--pack", default=str(ROOT / ".gpu" / "model.pack"))
    ap.add_argument("--out", default=str(ROOT / ".gpu" / "model"), help="unpack: the checkpoint folder to write")
    args = ap.parse_args(argv)
    if args.action == "pack":
        if args.model is None:
            sys.path.insert(0, str(ROOT))
            from kasp.models.modeling import default_model_path

            args.model = default_model_path()
        size = pack(Path(args.model), Path(args.pack))
        print(f"packed {args.model} into {args.pack}: {size / 2**20:.1f} MiB")
    else:
        print(f"unpacked into {unpack(Path(args.pack), Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
