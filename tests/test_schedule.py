import pytest

from kasp.schedule import cubic_sparsity, pruning_interval, pruning_steps


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
    from kasp.views import schedule_frame

    curve, points = schedule_frame(0.9, 2000, 100)
    assert points["step"].tolist() == pruning_steps(2000, 100)
    assert points["sparsity"].tolist() == [cubic_sparsity(t, 2000, 0.9) for t in pruning_steps(2000, 100)]
    assert curve["step"].iloc[-1] == 2000 and curve["sparsity"].iloc[-1] == 0.9
