"""Each distillation term against an independent computation."""

import math

import numpy as np
import pytest
import torch

from kasp.core.distill import ScoreCapture, attention_loss, hidden_loss, layer_map, prediction_loss, task_loss


def _model(seed=0, layers=2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=32,
                     max_position_embeddings=32, num_labels=2, attn_implementation="eager",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def _batch():
    ids = torch.tensor([[2, 5, 7, 9, 3, 0, 0], [2, 4, 4, 6, 8, 11, 3]])
    am = (ids != 0).long()
    return ids, am


@pytest.mark.slow
def test_scores_match_projection_recomputation_and_softmax():
    model = _model()
    ids, am = _batch()
    cap = ScoreCapture(model)
    out = model(input_ids=ids, attention_mask=am, output_hidden_states=True, output_attentions=True)
    scores = cap.scores(am)
    assert len(scores) == 2 and scores[0].shape == (2, 4, 7, 7)
    for i, layer in enumerate(model.bert.encoder.layer):
        x = out.hidden_states[i]  # input to layer i, [B, T, H]
        q = x @ layer.attention.self.query.weight.T + layer.attention.self.query.bias
        k = x @ layer.attention.self.key.weight.T + layer.attention.self.key.bias
        q = q.view(2, 7, 4, 4).permute(0, 2, 1, 3)
        k = k.view(2, 7, 4, 4).permute(0, 2, 1, 3)
        ref = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(4)
        ref[:, :, :, 5:] = torch.where(am[:, None, None, 5:].bool(), ref[:, :, :, 5:], torch.zeros(()))
        torch.testing.assert_close(scores[i], ref, rtol=1e-5, atol=1e-5)
        # padded key columns are exactly zero
        assert torch.all(scores[i][0, :, :, 5:] == 0)
        # softmax over real keys reproduces the model's own post-softmax attention probabilities
        probs = torch.softmax(scores[i].masked_fill(~am[:, None, None, :].bool(), float("-inf")), dim=-1)
        torch.testing.assert_close(probs, out.attentions[i], rtol=1e-4, atol=1e-5)
    cap.remove()


def test_scores_independent_of_attention_implementation():
    model = _model()
    ids, am = _batch()
    cap = ScoreCapture(model)
    model(input_ids=ids, attention_mask=am)
    eager = [s.clone() for s in cap.scores(am)]
    model.set_attn_implementation("sdpa")
    model(input_ids=ids, attention_mask=am)
    for a, b in zip(eager, cap.scores(am)):
        torch.testing.assert_close(a, b)


def test_attention_loss_matches_numpy_and_ignores_padding():
    g = torch.Generator().manual_seed(1)
    s = [torch.randn(2, 3, 5, 5, generator=g) for _ in range(2)]
    t = [torch.randn(2, 3, 5, 5, generator=g) for _ in range(2)]
    ref = sum(np.mean((a.numpy() - b.numpy()) ** 2) for a, b in zip(s, t))
    assert float(attention_loss(s, t)) == pytest.approx(ref, rel=1e-6)


def test_padding_does_not_reach_real_positions():
    """Tokens under padding never change the scores of real query rows, and padded key columns are 0."""
    model = _model(0)
    ids, am = _batch()
    cap = ScoreCapture(model)
    model(input_ids=ids, attention_mask=am)
    before = [s.detach().clone() for s in cap.scores(am)]
    ids2 = ids.clone()
    ids2[0, 5:] = 17  # different tokens under the padding
    model(input_ids=ids2, attention_mask=am)
    real = am[0].bool()
    for a, b in zip(before, cap.scores(am)):
        torch.testing.assert_close(a[0][:, real], b[0][:, real].detach(), rtol=1e-5, atol=1e-5)
        assert torch.all(b[0][:, :, ~real] == 0)
    # so the attention loss between two models is unchanged by what sits under the padding
    teacher = _model(1)
    tcap = ScoreCapture(teacher)
    losses = []
    for x in (ids, ids2):
        model(input_ids=x, attention_mask=am)
        teacher(input_ids=x, attention_mask=am)
        s, t = cap.scores(am), tcap.scores(am)
        losses.append(float(attention_loss([a[:, :, real] for a in s], [b[:, :, real] for b in t]).detach()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[0] > 0


def test_hidden_loss_sums_layers():
    g = torch.Generator().manual_seed(2)
    s = tuple(torch.randn(2, 4, 8, generator=g) for _ in range(3))
    t = tuple(torch.randn(2, 4, 8, generator=g) for _ in range(3))
    ref = sum(((a - b) ** 2).mean() for a, b in zip(s, t))
    assert float(hidden_loss(s, t)) == pytest.approx(float(ref), rel=1e-6)
    assert float(hidden_loss(s, s)) == 0.0


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_prediction_loss_is_soft_cross_entropy(tau):
    zs = np.array([[1.0, -0.5], [0.2, 0.3], [3.0, 0.0]])
    zt = np.array([[0.5, 0.5], [-1.0, 2.0], [2.0, 1.0]])

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    ref = -(softmax(zt / tau) * np.log(softmax(zs / tau))).sum(1).mean()
    got = float(prediction_loss(torch.tensor(zs), torch.tensor(zt), tau))
    assert got == pytest.approx(ref, rel=1e-6)
    # its minimum over student logits is at the teacher's logits, where it equals the teacher's entropy
    ent = -(softmax(zt / tau) * np.log(softmax(zt / tau))).sum(1).mean()
    assert float(prediction_loss(torch.tensor(zt), torch.tensor(zt), tau)) == pytest.approx(ent, rel=1e-6)
    assert got > ent


def test_prediction_loss_refuses_regression_and_task_loss_handles_it():
    with pytest.raises(ValueError):
        prediction_loss(torch.zeros(3, 1), torch.zeros(3, 1))
    assert float(task_loss(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 4.0]))) == pytest.approx(2.0)
    assert float(task_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))) == pytest.approx(math.log(2))


def test_layer_map():
    assert layer_map(6, 6) == ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6])
    assert layer_map(4, 12) == ([2, 5, 8, 11], [0, 3, 6, 9, 12])
    from kasp.ground.errors import KaspError

    with pytest.raises(KaspError):
        layer_map(5, 12)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_scores_from_attention_function_equal_the_hooked_recomputation(impl):
    """The KASP loss with scores taken inside the attention function (AttentionScores) equals the loss
    with scores recomputed from hooked projections (ScoreCapture), terms and gradients, on a fixed batch;
    the model's own attention implementation is back after remove()."""
    from kasp.core.distill import ATTENTION_FUNCTION, AttentionScores, KaspLoss

    ids, am = _batch()
    batch = {"input_ids": ids, "attention_mask": am, "labels": torch.tensor([0, 1])}
    results = {}
    for capture in ("hooks", "attention"):
        student, teacher = _model(0), _model(1, layers=4)  # a deeper teacher: the layer map matters
        student.set_attn_implementation(impl)
        teacher.set_attn_implementation(impl)
        loss = KaspLoss(student, teacher, score_capture=capture, temperature=2.0)
        if capture == "attention":
            assert student.config._attn_implementation == ATTENTION_FUNCTION
            assert isinstance(loss.s_cap, AttentionScores)
        total, terms, _ = loss(student, batch)
        total.backward()
        results[capture] = ({k: float(v.detach()) for k, v in terms.items()},
                            {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None})
        loss.remove()
        assert student.config._attn_implementation == impl and teacher.config._attn_implementation == impl
    (t_old, g_old), (t_new, g_new) = results["hooks"], results["attention"]
    assert t_old.keys() == t_new.keys() == {"attention", "hidden", "prediction"}
    for k in t_old:
        assert t_new[k] == pytest.approx(t_old[k], rel=1e-5, abs=1e-7), k
    assert t_old["attention"] > 0
    assert g_old.keys() == g_new.keys()
    for n in g_old:
        torch.testing.assert_close(g_new[n], g_old[n], rtol=1e-4, atol=1e-6)


def test_attention_scores_match_score_capture_and_switch_off():
    from kasp.core.distill import AttentionScores

    model = _model()
    ids, am = _batch()
    ref = ScoreCapture(model)
    cap = AttentionScores(model)
    out = model(input_ids=ids, attention_mask=am, output_hidden_states=True)
    for a, b in zip(cap.scores(am), ref.scores(am)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.all(a[0, :, :, 5:] == 0)
    cap.clear()
    cap.enabled = False  # plain sdpa attention: the same outputs, nothing kept
    out2 = model(input_ids=ids, attention_mask=am, output_hidden_states=True)
    torch.testing.assert_close(out2.logits, out.logits, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError):
        cap.scores(am)
    cap.remove()
    ref.remove()


def test_kasp_loss_from_config_reads_the_recipes_weights_and_temperature():
    from kasp.spec.config import make_config
    from kasp.core.distill import KaspLoss

    student, teacher = _model(0), _model(1)
    cfg = make_config("prune", "kasp", "stsb", hidden_weight=0.5, prediction_weight=2.0, temperature=2.0)
    loss = KaspLoss.from_config(cfg, student, teacher)
    assert loss.weights == {"attention": 1.0, "hidden": 0.5, "prediction": 2.0, "task": 0.0}
    assert loss.temperature == 2.0 and loss.regression  # STS-B, read from the recipe's task
    loss.remove()
    magnitude = KaspLoss.from_config(make_config("prune", "magnitude", "sst2"), student, None, regression=False)
    assert magnitude.weights == {"attention": 0.0, "hidden": 0.0, "prediction": 0.0, "task": 1.0}
    assert not magnitude.regression


def test_the_shared_training_step_is_loss_backward_clip_step_schedule_masks():
    """kasp.training.step.training_step does what the loop did inline: the same weights as the steps written out."""
    from kasp.core.distill import KaspLoss
    from kasp.core.masks import MagnitudePruner
    from kasp.training.step import training_step

    ids, am = _batch()
    batch = {"input_ids": ids, "attention_mask": am, "token_type_ids": torch.zeros_like(ids),
             "labels": torch.tensor([0, 1])}
    teacher = _model(1)
    result = []
    for shared in (True, False):
        student = _model(0).train()
        loss_fn = KaspLoss(student, teacher, task_loss_weight=1.0)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
        pruner = MagnitudePruner(student, 0.5, 10, 5)
        pruner.step(4)
        for _ in range(3):
            if shared:
                loss, terms = training_step(student, batch, loss_fn, opt, scheduler=sched, pruner=pruner,
                                            max_grad_norm=0.1)
                assert set(terms) == {"attention", "hidden", "prediction", "task"} and loss.requires_grad
            else:
                loss, _, _ = loss_fn(student, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 0.1)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                pruner.apply()
        loss_fn.remove()
        assert all(p.grad is None for p in student.parameters())
        result.append(student.state_dict())
    assert all(torch.equal(result[0][k], result[1][k]) for k in result[0])
    zeros = sum(int((m == 0).sum()) for m in pruner.masks.values())
    assert zeros > 0 and all(torch.equal(lin.weight * (m != 0), lin.weight) for lin, m in
                             ((pruner.linears[n], pruner.masks[n]) for n in pruner.masks))
