"""The small-dense baseline: the size that matches a sparsity, the shrunk student and a small-dense run.
Tiny random BERTs only."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

MINILM = SimpleNamespace(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
LAYER = 4 * 384 * 384 + 2 * 384 * 1536  # encoder linear weights of one MiniLM layer


# --- small-dense -----------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97])
def test_size_for_sparsity_matches_the_nonzero_count(s):
    from kasp.core.small_dense import FFN_STEP, size_for_sparsity

    size = size_for_sparsity(MINILM, s)
    target = round((1 - s) * 6 * LAYER)
    assert size.target_nonzeros == target
    assert 6 % size.layers == 0  # the layer map needs k = L_T / L_S whole
    assert size.encoder_linear == size.layers * (4 * 384 ** 2 + 2 * 384 * size.ffn_width)
    assert size.equivalent_sparsity == pytest.approx(1 - size.encoder_linear / (6 * LAYER))
    smallest = 4 * 384 ** 2 + 2 * 384 * FFN_STEP  # one layer, narrowest FFN: no smaller student exists
    if target >= smallest:
        assert abs(size.encoder_linear - target) <= LAYER  # within one layer's granularity
        assert abs(size.encoder_linear - target) <= size.layers * 384 * FFN_STEP  # in fact within half an FFN step
    else:
        assert (size.layers, size.ffn_width) == (1, FFN_STEP)


def test_size_for_sparsity_known_shapes():
    from kasp.core.small_dense import size_for_sparsity

    # 50 %: three full layers exactly, the top layer of each block of two (layer map i*k + k - 1)
    s = size_for_sparsity(MINILM, 0.5)
    assert (s.layers, s.ffn_width, s.kept_layers, s.encoder_linear) == (3, 1536, (1, 3, 5), 3 * LAYER)
    # 90 %: 1,061,683 non-zeros -> one layer (the top one) with 614.4 FFN neurons -> 608
    s = size_for_sparsity(MINILM, 0.9)
    assert (s.layers, s.ffn_width, s.kept_layers) == (1, 608, (5,))
    with pytest.raises(ValueError, match="sparsity"):
        size_for_sparsity(MINILM, 1.0)


def test_shrunk_student_keeps_the_chosen_weights_and_reloads(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from tests.helpers import make_tiny_checkpoint
    from kasp.models.modeling import count_parameters, load_classifier
    from kasp.core.small_dense import shrink_to, size_for_sparsity

    src = make_tiny_checkpoint(tmp_path / "m", layers=4, hidden=32, heads=4, num_labels=2, dropout=0.0)
    full = load_classifier(str(src)).eval()
    model = load_classifier(str(src)).eval()
    size = size_for_sparsity(model.config, 0.6)  # 40 % of 4 x 8,192 = 13,107 -> 2 layers of FFN 32 (12,288)
    assert (size.layers, size.ffn_width, size.kept_layers) == (2, 32, (1, 3))
    shrink_to(model, size)
    assert count_parameters(model)["encoder_linear"] == size.encoder_linear == 12288
    old, new = full.bert.encoder.layer, model.bert.encoder.layer
    assert torch.equal(new[0].attention.self.query.weight, old[1].attention.self.query.weight)
    assert torch.equal(new[1].attention.output.dense.weight, old[3].attention.output.dense.weight)
    # the kept FFN neurons are the 32 of 64 with the largest |W_in row| * |W_out column|
    fin, fout = old[3].intermediate.dense.weight, old[3].output.dense.weight
    top = torch.topk(fin.norm(dim=1) * fout.norm(dim=0), 32).indices.sort().values
    assert torch.equal(new[1].intermediate.dense.weight, fin[top])
    assert torch.equal(new[1].output.dense.weight, fout[:, top])
    model.save_pretrained(tmp_path / "small")
    back = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small", use_safetensors=True).eval()
    assert (back.config.num_hidden_layers, back.config.intermediate_size) == (2, 32)
    x = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    assert torch.allclose(back(input_ids=x).logits, model(input_ids=x).logits, atol=1e-6)


@pytest.mark.slow
def test_small_dense_run_is_a_run_like_any_other(tiny_store, tiny_pretrained, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from kasp.cli import main
    from kasp.analysis.retention import compare
    from kasp.ground.runs import RunDir
    from kasp.ui.tables import runs_frame

    out = tiny_store / "small-dense-run"
    rc = main(["prune", "--task", "sst2", "--method", "small-dense", "--sparsity", "0.6", "--model", str(tiny_pretrained),
               "--max-steps", "6", "--max-train-samples", "128", "--max-eval-samples", "32", "--eval-every", "3",
               "--runs-dir", str(tiny_store), "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = RunDir(out).report()
    sd = rep["small_dense"]
    # tiny model: 2 layers of 4*32^2 + 2*32*64 = 8,192 -> 40 % of 16,384 = 6,554 -> 1 layer, FFN 32 (6,144)
    assert (sd["layers"], sd["ffn_width"], sd["encoder_linear"]) == (1, 32, 6144)
    assert rep["parameters"]["encoder_linear"] == 6144 and rep["target_sparsity"] == 0.6
    assert rep["sparsity"]["pruned_zeros"] == 0  # dense: no masks
    m = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint", use_safetensors=True)
    assert m.config.num_hidden_layers == 1
    capsys.readouterr()
    assert main(["inspect", str(out), "--json", "--no-sizes"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 1 and info["parameters"]["encoder_linear"] == 6144
    r = compare(str(tiny_store / "teacher"), str(out), "sst2", samples=8)  # depth 2 -> 1 through the layer map
    assert len(r.similarity) == 1 and 0.0 <= r.mean_similarity <= 1.0
    row = runs_frame(tiny_store).set_index("id").loc["small-dense-run"]
    assert row["measured_sparsity"] == pytest.approx(sd["equivalent_sparsity"])  # plotted where its size belongs
