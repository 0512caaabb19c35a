"""The compact export (kasp-sparse version 2, ``kasp export --format compact``): float16 values, tensors shared
with the installed pre-trained model, masks only where they pay; loading undoes all three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kasp.ground.errors import KaspError
from kasp.models.export import SPARSE_FILE, export_sparse, load_sparse, unpack


@pytest.fixture(scope="module")
def pruned_default(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint of the default model with a new 2-class head, one FFN matrix 90 % zeros, the word
    embeddings untouched (as --freeze-word-embeddings leaves them), every other tensor moved."""
    from transformers import AutoModelForSequenceClassification

    from kasp.models.modeling import default_model_path

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=2)
    with torch.no_grad():
        for name, p in model.named_parameters():  # as if trained: every tensor but the frozen one moves
            if "word_embeddings" not in name:
                p.add_(1e-3)
        w = model.bert.encoder.layer[0].intermediate.dense.weight
        w[w.abs() < w.abs().flatten().kthvalue(int(0.9 * w.numel())).values] = 0.0
    path = tmp_path_factory.mktemp("compact") / "ck"
    model.save_pretrained(path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_compact_round_trip_shares_the_embeddings_and_rounds_to_float16(pruned_default, tmp_path):
    path, state = pruned_default
    sizes = export_sparse(path, tmp_path / "compact", compact=True)
    export_sparse(path, tmp_path / "v1")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "compact" / SPARSE_FILE), "pt") as h:
        meta, names = h.metadata(), set(h.keys())
    shared = json.loads(meta["shared"])
    assert meta["version"] == "2" and "bert.embeddings.word_embeddings.weight" in shared
    assert "bert.embeddings.word_embeddings.weight" not in names  # not stored: taken from the package
    assert "bert.embeddings.position_embeddings.weight" in names  # changed, so stored
    # the pruned matrix is split, the dense ones are stored whole (a mask would cost more than it saves)
    assert "bert.encoder.layer.0.intermediate.dense.weight::mask" in names
    assert "bert.encoder.layer.1.intermediate.dense.weight" in names
    v1 = (tmp_path / "v1" / SPARSE_FILE).stat().st_size
    assert sizes["file"] < 0.3 * v1  # no 47 MB embedding matrix, half-size values
    assert set(shared) == {"bert.embeddings.word_embeddings.weight"}
    back = load_sparse(tmp_path / "compact")
    assert set(back) == set(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype, k
        if k in shared:
            assert torch.equal(back[k], v), k  # shared: bit for bit
        elif v.is_floating_point():
            assert torch.equal(back[k], v.to(torch.float16).to(v.dtype)), k  # exactly the float16 rounding
        else:
            assert torch.equal(back[k], v), k
    zeros = back["bert.encoder.layer.0.intermediate.dense.weight"] == 0
    assert zeros.float().mean().item() == pytest.approx(0.9, abs=1e-3)


def test_unpack_writes_a_checkpoint_every_command_reads(pruned_default, tmp_path):
    from kasp.models.modeling import load_classifier

    path, state = pruned_default
    export_sparse(path, tmp_path / "compact", compact=True)
    ck = unpack(tmp_path / "compact", tmp_path / "ck")
    model = load_classifier(str(ck))
    got = model.state_dict()
    assert torch.equal(got["bert.embeddings.word_embeddings.weight"], state["bert.embeddings.word_embeddings.weight"])
    assert (ck / "tokenizer.json").is_file() or (ck / "vocab.txt").is_file() or not (path / "tokenizer.json").is_file()
    with pytest.raises(KaspError, match="exists"):
        unpack(tmp_path / "compact", tmp_path / "ck")


def test_compact_export_refuses_a_package_that_holds_other_embeddings(pruned_default, tmp_path, monkeypatch):
    import kasp.models.export as export

    path, _ = pruned_default
    export_sparse(path, tmp_path / "compact", compact=True)
    real = export._default_tensors()
    other = dict(real, **{"embeddings.word_embeddings.weight": real["embeddings.word_embeddings.weight"] + 1})
    monkeypatch.setattr(export, "_default_tensors", lambda: other)
    with pytest.raises(KaspError, match="holds another version of it.*pip install"):
        load_sparse(tmp_path / "compact")
    monkeypatch.setattr(export, "_default_tensors", lambda: {})
    with pytest.raises(KaspError, match="lacks it"):
        load_sparse(tmp_path / "compact")


def test_an_export_in_parts_loads_as_the_one_file_export(pruned_default, tmp_path, capsys):
    """Parts (``--max-file-mb``): every file under the cap, the same tensors back; a missing part is named."""
    from kasp.cli import main
    from kasp.models.export import weight_files

    path, _ = pruned_default
    whole = export_sparse(path, tmp_path / "whole", compact=True)
    cap = 2_000_000
    parted = export_sparse(path, tmp_path / "parts", compact=True, max_file_bytes=cap)
    files = weight_files(tmp_path / "parts")
    assert [f.name for f in files[:2]] == [SPARSE_FILE, "sparse-2.safetensors"] and len(files) > 2
    # a file holds whole tensors, so it may pass the cap by at most its header
    assert all(f.stat().st_size < cap + 50_000 for f in files)
    assert weight_files(tmp_path / "whole") == [tmp_path / "whole" / SPARSE_FILE]
    assert parted["file"] == sum(f.stat().st_size for f in files) >= whole["file"]
    a, b = load_sparse(tmp_path / "whole"), load_sparse(tmp_path / "parts")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    files[-1].unlink()
    with pytest.raises(KaspError, match=f"{files[-1].name} is missing: copy the whole export directory"):
        load_sparse(tmp_path / "parts")
    assert main(["export", str(path), str(tmp_path / "cli"), "--format", "compact", "--max-file-mb", "3"]) == 0
    out = capsys.readouterr().out
    assert "sparse.safetensors, sparse-2.safetensors" in out
    assert all(f.stat().st_size < 3_050_000 for f in weight_files(tmp_path / "cli"))
    with pytest.raises(KaspError, match="positive"):
        export_sparse(path, tmp_path / "zero", max_file_bytes=0)
