import copy

import pytest
import torch

from kasp.core.masks import MagnitudePruner, magnitude_masks, sparsity_summary, sparsity_table
from kasp.models.modeling import prunable_linears


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(30, 17, generator=g), "b": torch.randn(64, 8, generator=g), "c": torch.randn(5, 5, generator=g)}


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.9, 0.95, 0.999])
def test_per_matrix_exact_count(s):
    w = _weights()
    masks = magnitude_masks(w, s, "layer")
    for n, m in masks.items():
        # round(s * n) zeros, capped at n - 1 (issue 11: 0.999 on the 25-weight matrix used to zero it entirely)
        assert int((~m).sum()) == min(round(s * w[n].numel()), w[n].numel() - 1)
        assert m.any()
        # the kept weights are the largest in magnitude
        if (~m).any() and m.any():
            assert w[n].abs()[m].min() >= w[n].abs()[~m].max()


@pytest.mark.parametrize("s", [0.3, 0.9])
def test_global_exact_count(s):
    w = _weights()
    masks = magnitude_masks(w, s, "global")
    total = sum(x.numel() for x in w.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(s * total)
    kept = torch.cat([w[n].abs()[m] for n, m in masks.items()])
    dropped = torch.cat([w[n].abs()[~m] for n, m in masks.items()])
    assert kept.min() >= dropped.max()


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_no_matrix_is_ever_zeroed_entirely(scope):
    w = _weights() | {"tiny": torch.full((2, 2), 1e-6)}  # the global ranking alone would empty it
    for s in (0.9, 0.99, 0.9999):
        masks = magnitude_masks(w, s, scope)
        assert all(int(m.sum()) >= 1 for m in masks.values()), (scope, s)
    assert int(masks["c"].sum()) == 1 or scope == "global"  # 5x5 at 0.9999 keeps exactly its largest weight
    if scope == "layer":
        assert bool(masks["c"].flatten()[w["c"].abs().flatten().argmax()])


def test_masks_only_shrink_even_when_pruned_weights_grow():
    w = _weights()
    prev = None
    for s in [0.2, 0.4, 0.6, 0.8, 0.9]:
        masks = magnitude_masks(w, s, "layer", previous=prev)
        if prev is not None:
            for n in masks:
                assert not (masks[n] & ~prev[n]).any(), "a pruned weight came back"
        # make pruned weights huge: without `previous` they would be selected again
        w = {n: torch.where(m, x, x.sign() * 100.0) for (n, x), m in zip(w.items(), masks.values())}
        prev = masks


def test_unknown_scope():
    with pytest.raises(ValueError):
        magnitude_masks(_weights(), 0.5, "row")


def _tiny_model(num_labels=2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32, num_labels=num_labels)
    return BertForSequenceClassification(cfg)


def test_pruner_touches_only_encoder_linear_weights():
    model = _tiny_model()
    before = copy.deepcopy(model.state_dict())
    names = {n for n, m in model.named_modules() if m in set(prunable_linears(model).values())}
    assert len(names) == 12  # 2 layers x (Q, K, V, O, FFN-in, FFN-out)
    pruner = MagnitudePruner(model, 0.9, total_steps=10, events=5, scope="layer")
    pruner.finish()
    after = model.state_dict()
    for key, v in after.items():
        if any(key == f"{n}.weight" for n in names):
            assert int((v == 0).sum()) == round(0.9 * v.numel())
        else:
            assert torch.equal(v, before[key]), f"{key} was modified"
    summary = sparsity_summary(model)
    assert summary["pruned_zeros"] == sum(round(0.9 * m.weight.numel()) for m in prunable_linears(model).values())
    assert summary["overall_sparsity"] < summary["pruned_sparsity"]
    lin = prunable_linears(model)
    assert sparsity_table(model) == {n: round(0.9 * m.weight.numel()) / m.weight.numel() for n, m in lin.items()}


def test_pruner_follows_schedule_and_reapplies():
    model = _tiny_model()
    pruner = MagnitudePruner(model, 0.8, total_steps=20, events=10, scope="global")
    assert pruner.interval == 2
    assert not pruner.step(0) and not pruner.step(1)
    assert pruner.step(2)
    assert pruner.current_sparsity == pytest.approx(0.8 * (1 - (1 - 2 / 20) ** 3))
    # an optimizer step would move masked weights; apply() zeroes them again
    lin = prunable_linears(model)["0.Q"]
    with torch.no_grad():
        lin.weight.add_(1.0)
    pruner.apply()
    assert torch.equal(lin.weight == 0, ~pruner.masks["0.Q"])


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra"])
def test_prunable_linears_on_supported_families(model_type):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=40, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(cfg)
    lin = prunable_linears(model)
    assert len(lin) == 12
    shapes = {k.split(".", 1)[1]: tuple(m.weight.shape) for k, m in lin.items()}
    assert shapes == {"Q": (16, 16), "K": (16, 16), "V": (16, 16), "O": (16, 16), "FFN-in": (32, 16), "FFN-out": (16, 32)}


def test_unsupported_layout_is_refused():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from kasp.ground.errors import KaspError

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20, n_positions=16))
    with pytest.raises(KaspError, match="bert, roberta"):
        prunable_linears(model)
