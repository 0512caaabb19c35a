"""Maintainer's measurement: KASP's sparse export against compressed-tensors' sparse-bitmask format.

Builds a 90 %-sparse MiniLM-L6-H384 classifier (the default model, its 36 encoder linear weight
matrices magnitude-pruned per matrix with ``kasp.core.masks.magnitude_masks``; the classifier head is
freshly initialised with seed 0), saves it, writes it in both formats, reads both back and reports
file sizes and whether every tensor comes back bit for bit.

compressed-tensors is not a KASP dependency (see docs/formats.md): its sparse-bitmask compressor
exists only up to version 0.14.0.1, which declares ``transformers<5``. To measure, install that
version beside KASP without its dependency pins, in a separate folder:

    .venv/bin/pip install --no-deps --target /tmp/ct compressed-tensors==0.14.0.1 loguru
    PYTHONPATH=/tmp/ct HF_HUB_OFFLINE=1 .venv/bin/python scripts/compare_sparse_formats.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch


def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[bool, list[str]]:
    """True if both state dicts hold the same names, shapes, dtypes and bytes (so -0.0 != +0.0)."""
    bad = sorted(set(a) ^ set(b))
    for k in set(a) & set(b):
        x, y = a[k].contiguous(), b[k].contiguous()
        if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x.view(torch.uint8) if x.dtype.is_floating_point
                                                                          else x, y.view(torch.uint8)
                                                                          if y.dtype.is_floating_point else y):
            bad.append(k)
    return not bad, bad


def pruned_default_model(sparsity: float = 0.9):
    """The default model as a 2-label classifier with its encoder linear weights pruned to ``sparsity``."""
    from kasp.core.masks import apply_masks, magnitude_masks
    from kasp.models.modeling import load_classifier, prunable_linears, resolve_model

    torch.manual_seed(0)
    model = load_classifier(resolve_model("default"), num_labels=2)
    linears = prunable_linears(model)
    masks = magnitude_masks({k: m.weight for k, m in linears.items()}, sparsity)
    apply_masks(linears, masks)
    return model.eval()


def measure(sparsity: float = 0.9) -> dict:
    """Sizes (bytes) and exactness of the dense checkpoint, KASP's export and compressed-tensors'."""
    from safetensors.torch import load_file, save_file

    from kasp.models.export import export_sparse, load_sparse
    from kasp.core.masks import sparsity_summary
    from kasp.models.modeling import prunable_linears

    model = pruned_default_model(sparsity)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    res: dict = {"sparsity": sparsity_summary(model)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save_pretrained(tmp / "dense")
        res["dense_bytes"] = (tmp / "dense" / "model.safetensors").stat().st_size
        export_sparse(tmp / "dense", tmp / "kasp")
        res["kasp_bytes"] = (tmp / "kasp" / "sparse.safetensors").stat().st_size
        saved = load_file(str(tmp / "dense" / "model.safetensors"))
        ok, bad = _bitwise_equal(saved, load_sparse(tmp / "kasp"))
        res["kasp_exact"], res["kasp_mismatches"] = ok, bad[:5]
        try:
            from compressed_tensors.compressors import ModelCompressor
            from compressed_tensors.config import BitmaskConfig
            import compressed_tensors
        except ImportError as e:
            res["compressed_tensors"] = f"not importable ({e}); see this script's docstring"
            return res
        res["compressed_tensors_version"] = compressed_tensors.__version__
        names = {id(m): n for n, m in model.named_modules()}
        targets = [names[id(m)] for m in prunable_linears(model).values()]
        mc = ModelCompressor(sparsity_config=BitmaskConfig(targets=targets, global_sparsity=sparsity))
        compressed = mc.compress(model, state_dict=dict(saved))
        (tmp / "ct").mkdir()
        save_file({k: v.contiguous() for k, v in compressed.items()}, str(tmp / "ct" / "model.safetensors"))
        model.config.save_pretrained(tmp / "ct")
        mc.update_config(str(tmp / "ct"))
        res["compressed_tensors_bytes"] = (tmp / "ct" / "model.safetensors").stat().st_size
        res["compressed_tensors_compressed_matrices"] = sum(1 for k in compressed if k.endswith(".bitmask"))
        fresh = pruned_default_model(0.0)  # same architecture; every weight is overwritten below
        with torch.no_grad():
            for p in fresh.parameters():
                p.fill_(1.0)
        mc2 = ModelCompressor.from_pretrained(str(tmp / "ct"))
        mc2.decompress(str(tmp / "ct"), fresh)
        back = {k: v.detach().contiguous() for k, v in fresh.state_dict().items() if k in saved}
        ok, bad = _bitwise_equal(saved, back)
        res["compressed_tensors_exact"], res["compressed_tensors_mismatches"] = ok, bad[:5]
        res["compressed_tensors_vs_kasp"] = res["compressed_tensors_bytes"] / res["kasp_bytes"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    res = measure(args.sparsity)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
