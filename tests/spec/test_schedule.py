import pytest

from kasp.spec.schedule import cubic_sparsity, pruning_interval, pruning_steps


def test_cubic_start_middle_end():
    assert cubic_sparsity(0, 1000, 0.9) == 0.0
    # s_f + (0 - s_f) (1 - 1/2)^3 = 0.9 * (1 - 1/8)
    assert cubic_sparsity(500, 1000, 0.9) == pytest.approx(0.9 * 7 / 8)
    assert cubic_sparsity(1000, 1000, 0.9) == pytest.approx(0.9)


def test_cubic_clamps_and_is_monotone():
    assert cubic_sparsity(-5, 100, 0.5) == 0.0
    assert cubic_sparsity(10_000, 100, 0.5) == pytest.approx(0.5)
    vals = [cubic_sparsity(t, 100, 0.95) for t in range(101)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    # cubic: most of the pruning happens early
    assert cubic_sparsity(25, 100, 0.95) > 0.95 / 2


def test_cubic_initial_sparsity():
    assert cubic_sparsity(0, 10, 0.9, initial_sparsity=0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [dict(total_steps=0), dict(final_sparsity=1.0), dict(final_sparsity=-0.1)])
def test_cubic_rejects_bad_input(bad):
    kw = dict(step=1, total_steps=10, final_sparsity=0.5) | bad
    with pytest.raises(ValueError):
        cubic_sparsity(**kw)


def test_about_100_pruning_events():
    assert pruning_interval(2000, 100) == 20
    steps = pruning_steps(2000, 100)
    assert steps[0] == 20 and steps[-1] == 2000 and len(steps) == 100
    assert pruning_interval(50, 100) == 1
    assert pruning_steps(7, 100) == [1, 2, 3, 4, 5, 6, 7]


def test_schedule_frame_marks_the_loops_mask_updates():
    from kasp.ui.curves import schedule_frame

    curve, points = schedule_frame(0.9, 2000, 100)
    assert points["step"].tolist() == pruning_steps(2000, 100)
    assert points["sparsity"].tolist() == [cubic_sparsity(t, 2000, 0.9) for t in pruning_steps(2000, 100)]
    assert curve["step"].iloc[-1] == 2000 and curve["sparsity"].iloc[-1] == 0.9


def test_lr_multiplier_plain_schedules_match_transformers():
    """constant and linear (with warm-up) give exactly transformers' schedules, so older runs repeat."""
    import torch
    from transformers import get_scheduler

    from kasp.spec.schedule import lr_multiplier

    for name, hf in (("constant", "constant_with_warmup"), ("linear", "linear")):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(hf, opt, num_warmup_steps=7, num_training_steps=50)
        for step in range(50):
            assert lr_multiplier(step, 50, name, warmup_steps=7) == pytest.approx(opt.param_groups[0]["lr"]), (name, step)
            opt.step()
            sched.step()


def test_rewarm_and_recovery_shapes():
    from kasp.spec.schedule import lr_multiplier, ramp_steps

    T, ramp = 100, ramp_steps(100, 0.2)
    assert ramp == 80
    f = [lr_multiplier(t, T, "rewarm", ramp=ramp, prune_every=10) for t in range(T)]
    assert f[0] == f[10] == f[70] == 1.0  # back to the peak at every mask update
    assert f[9] == pytest.approx(0.1) and all(f[i] > f[i + 1] for i in range(10, 19))  # linear decay between
    assert f[80] == 1.0 and f[90] == pytest.approx(0.5) and f[99] == pytest.approx(0.05)  # recovery: down to 0
    c = [lr_multiplier(t, T, "constant", ramp=ramp) for t in range(T)]
    assert c[:80] == [1.0] * 80 and c[90] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="recovery must be in"):
        ramp_steps(100, 1.0)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        lr_multiplier(1, 10, "cosine")


def test_pruner_initial_step_and_ramp():
    """A large first pruning step at step 0, the cubic climb from it, the target at the ramp's end, and no
    mask update in the recovery phase."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from kasp.core.masks import MagnitudePruner

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    p = MagnitudePruner(model, 0.9, total_steps=100, events=8, initial=0.5, ramp=80)
    assert p.interval == 10 and p.scheduled(0) == pytest.approx(0.5) and p.scheduled(80) == pytest.approx(0.9)
    updates = [t for t in range(100) if p.step(t)]
    assert updates == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert p.current_sparsity == pytest.approx(0.9)
    plain = MagnitudePruner(model, 0.9, total_steps=100, events=10)
    assert [t for t in range(100) if plain.step(t)] == list(range(10, 100, 10))  # as before: no step 0, T by finish()
    with pytest.raises(ValueError, match="initial sparsity"):
        MagnitudePruner(model, 0.5, total_steps=10, initial=0.7)


def _pruner_updates(total, events, recovery, initial):
    """The steps at which a real MagnitudePruner (on a one-layer BERT) recomputes its masks, finish() at T."""
    from kasp.core.masks import MagnitudePruner
    from kasp.spec.schedule import ramp_steps

    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=4, intermediate_size=32))
    pruner = MagnitudePruner(model, 0.9, total, events, initial=initial, ramp=ramp_steps(total, recovery))
    assert pruner.linears, "the tiny model has no prunable linear: the comparison would be empty"
    seen = [(t, pruner.current_sparsity) for t in range(total + 1) if t < total and pruner.step(t)]
    pruner.finish()
    return seen + [(total, pruner.current_sparsity)]


def test_the_drawn_schedule_is_the_pruners_with_a_first_step_and_recovery():
    """The Overview and the Weights page draw a run's schedule from its recipe: with a first pruning step
    (initial_sparsity) and a recovery phase the mask updates and their sparsities are the ones the pruner makes."""
    from kasp.spec.schedule import mask_update_steps, scheduled_sparsity
    from kasp.ui.curves import schedule_frame

    for total, events, recovery, initial in ((2000, 100, 0.2, 0.5), (2000, 100, 0.0, 0.0), (37, 10, 0.3, 0.2),
                                             (100, 7, 0.25, 0.0), (12, 6, 0.0, 0.3)):
        real = _pruner_updates(total, events, recovery, initial)
        assert mask_update_steps(total, events, recovery, initial) == [t for t, _ in real]
        _, points = schedule_frame(0.9, total, events, initial, recovery)
        assert points["step"].tolist() == [t for t, _ in real]
        assert points["sparsity"].round(9).tolist() == [round(s, 9) for _, s in real]
    assert mask_update_steps(2000, 100) == pruning_steps(2000, 100)
    curve, points = schedule_frame(0.9, 2000, 100, 0.5, 0.2)
    assert curve["sparsity"].iloc[0] == 0.5 and points["step"].iloc[0] == 0
    assert 1600 in curve["step"].tolist() and curve.set_index("step")["sparsity"][1600] == 0.9  # flat from the ramp's end
    assert scheduled_sparsity(800, 2000, 0.9, 0.5, 0.2) == cubic_sparsity(800, 1600, 0.9, 0.5)


def test_the_trainer_callback_prunes_on_the_same_schedule():
    """KaspPruningCallback (the Hugging Face Trainer route) takes a first pruning step and a recovery phase as
    `kasp prune` does: the first step before the start, then the same mask updates at the same sparsities."""
    from types import SimpleNamespace

    from transformers import BertConfig, BertForSequenceClassification

    from kasp.spec.schedule import mask_update_steps
    from kasp.training.hf_trainer import KaspPruningCallback

    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=4, intermediate_size=32))
    cb = KaspPruningCallback(target=0.9, events=4, initial=0.5, recovery=0.2)
    state = SimpleNamespace(max_steps=12, global_step=0, is_world_process_zero=True)
    cb.on_train_begin(None, state, None, model=model)
    seen = [(0, cb.pruner.current_sparsity)] if cb.pruner.events else []
    for t in range(12):
        state.global_step = t
        before = cb.pruner.events
        cb.on_step_begin(None, state, None)
        if cb.pruner.events > before:
            seen.append((t, cb.pruner.current_sparsity))
    cb.on_train_end(None, state, None)
    seen.append((12, cb.pruner.current_sparsity))
    assert [t for t, _ in seen] == mask_update_steps(12, 4, 0.2, 0.5) and seen == _pruner_updates(12, 4, 0.2, 0.5)
