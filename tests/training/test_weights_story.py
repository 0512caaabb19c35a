"""The weights' story: pictures recorded during a real tiny prune run, read back and checked against
the model's own masks and weights at the same moment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import open_page, plotly_charts
from kasp.training.weights_story import HIST_BINS, STORY_FILE, cell_edges, cell_sizes, grid_shape, hist_edges, read_story
from kasp.training.story_recorder import StoryRecorder, density_grid, magnitude_histogram


def test_grid_shapes_and_cells():
    assert grid_shape((384, 384)) == (8, 8)
    assert grid_shape((1536, 384)) == (32, 8) and grid_shape((384, 1536)) == (8, 32)  # 48 x 48 blocks
    assert grid_shape((768, 3072)) == (8, 32)  # capped at 32 cells
    assert grid_shape((32, 64)) == (8, 16)
    assert cell_edges(10, 4) == [0, 2, 5, 8, 10]  # a side 4 does not divide: blocks differ by one row
    assert cell_sizes((10, 20)).sum() == 200


def test_density_grid_non_divisible_matches_block_means():
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(37, 91, generator=g) > 0.7
    d = density_grid(mask)
    gr, gc = grid_shape((37, 91))
    assert d.shape == (gr, gc)
    er, ec = cell_edges(37, gr), cell_edges(91, gc)
    for i in range(gr):
        for j in range(gc):
            assert d[i, j].item() == pytest.approx(mask[er[i]:er[i + 1], ec[j]:ec[j + 1]].float().mean().item())


def test_histogram_counts_and_threshold_exact():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(64, 48, generator=g) * torch.logspace(-6, 1, 64 * 48).view(64, 48)  # spans every bin
    mask = w.abs() > w.abs().median()
    w = w.masked_fill(~mask, 0.0)
    counts, thr = magnitude_histogram(w, mask)
    kept = w.abs()[mask].numpy()
    edges = hist_edges()
    assert counts.shape == (HIST_BINS,) and len(edges) == HIST_BINS + 1
    ref = np.array([((kept >= lo) & (kept < hi)).sum() for lo, hi in zip(edges[:-1], edges[1:])])
    assert (counts == ref).all() and counts.sum() == mask.sum()
    assert thr == kept.min()
    with pytest.raises(ValueError, match="masked weight"):
        magnitude_histogram(torch.ones(4, 4), torch.arange(16).view(4, 4) < 8)  # pruned entries not zeroed


@pytest.fixture(scope="module")
def story_run(tmp_path_factory, tiny_store, tiny_pretrained):
    """A tiny real KASP run recording its story, plus what the callback saw of masks and weights."""
    from kasp.spec.config import make_config
    from kasp.ground.runs import RunDir
    from kasp.training.train import train

    store = tmp_path_factory.mktemp("story")
    shutil.copytree(tiny_store / "teacher", store / "teacher")
    # the paper's schedule (no first pruning step, no recovery phase), whatever SST-2's default recipe adopts
    cfg = make_config("prune", "kasp", "sst2", model=str(tiny_pretrained), sparsity=0.7, max_steps=12,
                      pruning_events=4, max_train_samples=128, max_eval_samples=32, eval_every=6, log_every=3,
                      initial_sparsity=0.0, recovery=0.0)
    seen = []

    def watch(event, rec):
        if event == "masks":
            seen.append({"step": rec["step"], "phase": rec["phase"],
                         "kept": {n: m.clone() for n, m in rec["masks"].items()},
                         "w": {n: lin.weight.detach().clone() for n, lin in rec["linears"].items()}})

    run = RunDir.create(store / "kasp70")
    train(cfg, run, callbacks=[watch], store=store, progress_bar=False)
    # the magnitude baseline at the same sparsity, for the side-by-side view
    mag = make_config("prune", "magnitude", "sst2", model=str(tiny_pretrained), sparsity=0.7, max_steps=12,
                      pruning_events=4, max_train_samples=128, max_eval_samples=32, eval_every=6, log_every=3)
    train(mag, RunDir.create(store / "mag70"), store=store, progress_bar=False)
    return run, seen


@pytest.mark.slow
def test_story_round_trips_from_a_tiny_run(story_run):
    run, seen = story_run
    story = read_story(run.path)
    assert story is not None
    # start + 4 pruning events (the last at step 9) + end, all recorded (4 events < 20 snapshots)
    assert list(story.steps) == [s["step"] for s in seen] == [0, 3, 6, 9, 12]
    assert story.phases == ["start", "prune", "prune", "prune", "end"]
    assert len(story.matrices) == 12  # 2 layers x Q, K, V, O, FFN-in, FFN-out
    report = run.report()
    for i, snap in enumerate(seen):
        for k, name in enumerate(story.matrices):
            shape = tuple(snap["w"][name].shape)
            assert story.shapes[k] == shape and story.density[i][k].shape == grid_shape(shape)
            measured = 1 - (snap["w"][name] == 0).float().mean().item()  # kept fraction of the weight itself
            assert story.kept_fraction(i, name) == pytest.approx(measured, abs=0.5 / 255 + 1e-6)
            # the threshold: the smallest kept |w| of that matrix at that step
            assert story.threshold[i, k] == snap["w"][name].abs()[snap["kept"][name]].min().item()
            assert story.hist[i, k].sum() == snap["kept"][name].sum().item()
    # the last picture agrees with the saved model's measured per-matrix sparsity
    for name, s in report["per_matrix_sparsity"].items():
        assert 1 - story.kept_fraction(len(seen) - 1, name) == pytest.approx(s, abs=0.5 / 255 + 1e-6)


@pytest.mark.slow
def test_story_is_json_lines_without_pickle_and_small(story_run):
    run, _ = story_run
    lines = (run.path / STORY_FILE).read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert recs[0]["type"] == "layout" and all(r["type"] == "snapshot" for r in recs[1:])
    # a results-file entry carries the same records: read_story takes the list as well
    assert list(read_story(recs).steps) == list(read_story(run.path).steps)
    # a torn last line (the run writing right now) is skipped
    torn = run.path.parent / "torn.jsonl"
    torn.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert len(read_story(torn).steps) == len(lines) - 1
    assert read_story(run.path.parent / "missing.jsonl") is None


def test_recorder_stride():
    assert StoryRecorder.stride(100) == 5 and StoryRecorder.stride(4) == 1 and StoryRecorder.stride(21) == 2
    with pytest.raises(ValueError):
        StoryRecorder(Path("x"), every=0)


@pytest.mark.slow
def test_results_file_entry_carries_the_same_records(story_run, tmp_path):
    from kasp.ui.stories import partner, story_entries

    run, _ = story_run
    from kasp.training.weights_story import story_records

    records = story_records(run.path)
    assert records == [json.loads(x) for x in (run.path / STORY_FILE).read_text().splitlines()]
    shipped = [{"id": "precomputed/a", "task": "sst2", "method": "kasp", "target_sparsity": 0.7, "steps": 12,
                "weights_story": records, "progress": []},
               {"id": "precomputed/b", "task": "sst2", "method": "magnitude", "target_sparsity": 0.7, "steps": 12}]
    entries = story_entries("sst2", tmp_path, precomputed=shipped)  # an empty store
    assert [(e["id"], e["has_story"]) for e in entries] == [("precomputed/a", True), ("precomputed/b", False)]
    assert list(read_story(entries[0]["story"]).steps) == list(read_story(run.path).steps)
    assert partner(entries[1], entries)["id"] == "precomputed/a"
    assert story_entries("sst2", tmp_path, precomputed=[]) == []
    live = story_entries("sst2", run.path.parent, precomputed=[])
    assert {e["id"] for e in live} == {"kasp70", "mag70"} and all(e["has_story"] for e in live)
    assert partner(next(e for e in live if e["id"] == "kasp70"), live)["id"] == "mag70"


@pytest.mark.slow
def test_what_to_notice_describes_the_displayed_matrix(story_run):
    from kasp.training.weights_story import pruned_count, step_numbers, what_to_notice

    run, seen = story_run
    story = read_story(run.path)
    other = read_story(run.path.parent / "mag70")
    i = len(story.steps) - 1
    for layer, kind in ((1, "Q"), (0, "FFN-in"), (1, "V")):
        name = f"{layer}.{kind}"
        nums = step_numbers(story, i, layer)
        text = what_to_notice(story, 12, layer, kind, other, ("kasp", "magnitude"))
        assert text.count(f"layer {layer}'s {kind} matrix") == 1  # the displayed matrix is the subject
        zeros = pruned_count(story, i, name)
        assert zeros == int((~seen[-1]["kept"][name]).sum())  # the matrix's zeros, from the run's own masks
        assert f"{zeros:,} of its" in text and f"|w| ≥ {nums[kind]['threshold']:.3g}" in text
        others = [k for k in nums if k != kind]
        assert not any(f"layer {layer}'s {k} matrix" in text for k in others)
        assert "magnitude at its step 12 (70.0 % pruned)" in text
    assert "nothing is pruned yet" in what_to_notice(story, 0, 0, "Q")
    assert "layer 0's Q matrix" in what_to_notice(story, 0, 0, "Q")


def _stretched(story_dir: Path, dest: Path, factor: int) -> Path:
    """A copy of a run whose story is the same pictures at ``factor`` times the step numbers: a longer run
    with the same sparsities at its mask updates (what a 2,000-step sweep run is beside a 500-step class run)."""
    shutil.copytree(story_dir, dest)
    recs = [json.loads(x) for x in (dest / STORY_FILE).read_text().splitlines()]
    for r in recs:
        if r["type"] == "snapshot":
            r["step"] *= factor
    (dest / STORY_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
    status = json.loads((dest / "status.json").read_text())
    status.update(total_steps=status["total_steps"] * factor, step=status["step"] * factor)
    (dest / "status.json").write_text(json.dumps(status))
    return dest


@pytest.mark.slow
def test_pair_index_matches_sparsity_not_step(story_run, tmp_path):
    from kasp.training.weights_story import pair_index

    run, _ = story_run
    story = read_story(run.path)
    long = read_story(_stretched(run.path.parent / "mag70", tmp_path / "mag70x4", 4))
    assert list(long.steps) == [0, 12, 24, 36, 48]
    for i in range(len(story.steps)):
        j = pair_index(story, i, long)
        assert long.sparsity[j] == pytest.approx(story.sparsity[i], abs=0.005)
        assert long.steps[j] == 4 * story.steps[i]  # the same fraction of the schedule, not the same step
    # equal step numbers would have compared different sparsities: what the page no longer does
    assert long.sparsity[long.nearest(12)] < story.sparsity[story.nearest(12)] - 0.1


# --- the Weights page (AppTest) -----------------------------------------------------------------
def _page(store, monkeypatch):
    return open_page("weights.py", store, monkeypatch)


def _charts(at):
    return plotly_charts(at)


def _heatmaps(at):
    fig = next(c for c in _charts(at) if any(t["type"] == "heatmap" for t in c["data"]))
    return [t["z"] for t in fig["data"] if t["type"] == "heatmap"], fig


def _bars(fig, name):
    return [t for t in fig["data"] if t["type"] == "bar" and t.get("name") == name]


def _notice(at):
    return next(m.value for m in at.markdown if m.value.startswith("**What to notice:**"))


def _marker(at):
    sched = [c for c in _charts(at) if "schedule" in c["layout"]["title"]["text"]][0]
    return next(t["x"] for t in sched["data"] if str(t.get("name", "")).startswith("step "))  # the "you are here" marker


@pytest.mark.slow
def test_weights_page_draws_the_story_and_the_slider_moves_it(story_run, monkeypatch):
    run, _ = story_run
    at = _page(run.path.parent, monkeypatch)
    at.selectbox(key="weights_run").set_value("kasp70").run()
    assert not at.exception
    story = read_story(run.path)
    zs, fig = _heatmaps(at)
    assert len(zs) == 2  # KASP and magnitude side by side
    assert not fig.get("frames") and not fig["layout"].get("updatemenus")  # no browser-side animation out of step
    k = story.index("0.Q")
    assert np.allclose(np.array(zs[0]), story.density[-1][k] * 100)  # the last step is drawn first
    assert "step 12" in fig["layout"]["title"]["text"]
    at.select_slider(key="weights_step").set_value(0).run()
    zs0, fig0 = _heatmaps(at)
    assert np.allclose(np.array(zs0[0]), 100.0) and "step 0" in fig0["layout"]["title"]["text"]
    assert "nothing is pruned yet" in _notice(at)
    at.select_slider(key="weights_step").set_value(6).run()
    zs6, _ = _heatmaps(at)
    assert np.allclose(np.array(zs6[0]), story.density[story.nearest(6)][k] * 100)
    assert _marker(at) == [6]  # the schedule figure marks the chosen step


@pytest.mark.slow
def test_the_zero_bar_counts_the_pruned_weights(story_run, monkeypatch):
    run, seen = story_run
    at = open_page("weights.py", run.path.parent, monkeypatch, query={"run": "kasp70", "layer": "1", "matrix": "FFN-out"})
    for step in (12, 6, 0):
        at.select_slider(key="weights_step").set_value(step).run()
        _, fig = _heatmaps(at)
        snap = next(s for s in seen if s["step"] == step)
        zero_bars = _bars(fig, "pruned")
        assert len(zero_bars) == 2  # one per panel
        w = snap["w"]["1.FFN-out"]
        assert zero_bars[0]["y"][0] == int((~snap["kept"]["1.FFN-out"]).sum()) == int((w == 0).sum())
        kept = _bars(fig, "kept")[0]
        assert sum(c[2] for c in kept["customdata"]) == w.numel() - zero_bars[0]["y"][0]  # kept + pruned = all
        assert (f"{zero_bars[0]['y'][0]:,} of its {w.numel():,} weights" if step else
                f"all its {w.numel():,} weights") in _notice(at)


@pytest.mark.slow
def test_the_text_names_the_displayed_matrix(story_run, monkeypatch):
    run, _ = story_run
    at = open_page("weights.py", run.path.parent, monkeypatch, query={"run": "kasp70"})
    for layer, kind in ((1, "V"), (0, "FFN-in"), (1, "O")):
        at.selectbox(key="weights_layer").set_value(layer).run()
        at.radio(key="weights_kind").set_value(kind).run()
        text = _notice(at)
        assert f"layer {layer}'s {kind} matrix" in text
        assert not any(f"layer {layer}'s {k} matrix" in text for k in ("Q", "K", "V", "O", "FFN-in", "FFN-out") if k != kind)
        _, fig = _heatmaps(at)
        assert fig["layout"]["title"]["text"].startswith(f"{layer}.{kind} at step")


@pytest.mark.slow
def test_side_by_side_pairs_runs_of_different_lengths_at_equal_sparsity(story_run, tmp_path, monkeypatch):
    """A 12-step KASP run beside a 48-step magnitude run: each KASP step is drawn beside the magnitude
    snapshot of the same sparsity (step x 4), never the magnitude run's own step of the same number."""
    run, _ = story_run
    store = tmp_path / "store"
    shutil.copytree(run.path, store / "kasp70")
    _stretched(run.path.parent / "mag70", store / "mag70x4", 4)
    story, long = read_story(store / "kasp70"), read_story(store / "mag70x4")
    at = open_page("weights.py", store, monkeypatch, query={"run": "kasp70", "matrix": "FFN-in"})
    for step in (3, 6, 9, 12):
        at.select_slider(key="weights_step").set_value(step).run()
        zs, fig = _heatmaps(at)
        assert len(zs) == 2
        i = story.nearest(step)
        j = int(np.flatnonzero(long.steps == 4 * step)[0])
        assert abs(long.sparsity[j] - story.sparsity[i]) <= 0.005
        assert np.allclose(np.array(zs[1]), long.density[j][long.index("0.FFN-in")] * 100)
        cap = next(c.value for c in at.caption if "Paired at equal sparsity" in c.value)
        assert f"at its step {4 * step} of 48" in cap and "differ in length" in cap
        assert f"magnitude baseline at its step {4 * step} ({long.sparsity[j] * 100:.1f} % pruned)" in _notice(at)


@pytest.mark.slow
def test_back_next_and_play_move_slider_address_text_and_marker_together(story_run, monkeypatch):
    run, _ = story_run
    at = open_page("weights.py", run.path.parent, monkeypatch, query={"run": "kasp70", "step": "3"})
    assert at.select_slider(key="weights_step").value == 3

    def in_step(step):
        assert at.select_slider(key="weights_step").value == step
        assert at.query_params["step"] in (str(step), [str(step)])
        assert _notice(at).startswith(f"**What to notice:** At step {step} ")
        assert _marker(at) == [step]
        assert f"at step {step} " in _heatmaps(at)[1]["layout"]["title"]["text"]

    at.button(key="weights_next").click().run()
    in_step(6)
    at.button(key="weights_back").click().run()
    in_step(3)
    at.toggle(key="weights_play").set_value(True).run()  # Play: the page steps to the next recorded step at once
    assert not at.exception
    in_step(6)
    assert at.toggle(key="weights_play").value is True
    at.button(key="weights_next").click().run()  # a manual step stops Play
    in_step(9)
    assert at.toggle(key="weights_play").value is False
    # Play to the end: each timer tick (simulated by clearing the last tick's time) moves one step, and Play
    # switches itself off at the last recorded step
    at.toggle(key="weights_play").set_value(True).run()
    in_step(12)
    at.session_state["weights_tick"] = 0.0
    at.run()
    in_step(12)
    assert at.toggle(key="weights_play").value is False
    # Play at the end starts again from the first step
    at.toggle(key="weights_play").set_value(True).run()
    in_step(0)
    at.session_state["weights_tick"] = 0.0
    at.run()
    in_step(3)


@pytest.mark.slow
def test_weights_page_with_an_empty_store_says_why(tmp_path, monkeypatch):
    import kasp.experiments.results

    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / "no-sweep" / f"{t}.json")
    at = _page(tmp_path, monkeypatch)
    text = " ".join(i.value for i in at.info)
    assert "No SST-2 prune run with recorded weight pictures" in text
    assert "have none to show" in text  # the shipped runs carry no pictures yet


@pytest.mark.slow
def test_a_link_opens_the_weights_view_it_names(story_run, monkeypatch):
    run, _ = story_run
    at = open_page("weights.py", run.path.parent, monkeypatch,
                   query={"run": "kasp70", "layer": "1", "matrix": "V", "step": "6", "compare": "0"})
    assert at.selectbox(key="weights_run").value == "kasp70"
    assert at.selectbox(key="weights_layer").value == 1 and at.radio(key="weights_kind").value == "V"
    assert at.select_slider(key="weights_step").value == 6 and at.toggle(key="weights_compare").value is False
    zs, fig = _heatmaps(at)
    story = read_story(run.path)
    assert len(zs) == 1 and np.allclose(np.array(zs[0]), story.density[story.nearest(6)][story.index("1.V")] * 100)
    assert not at.warning
    # a step this run never recorded is reported and the run's end is shown
    at = open_page("weights.py", run.path.parent, monkeypatch, query={"run": "kasp70", "step": "7"})
    assert at.select_slider(key="weights_step").value == 12
    assert any("The link's step `7`" in w.value for w in at.warning)


@pytest.mark.slow
def test_the_weights_preset_opens_a_shipped_kasp_run(story_run, tmp_path, monkeypatch):
    """The Overview's "What does 90 % sparsity remove?" opens the Weights page on the shipped sweep's
    KASP run at 90 %, feed-forward input matrix of layer 0, beside the magnitude run."""
    import json

    import kasp.experiments.results
    from kasp.ui.presets import view_presets
    from kasp.training.weights_story import story_records

    run, _ = story_run
    records = story_records(run.path)
    sweep = {"format": "kasp-sweep", "schema_version": 1, "task": "sst2", "model": "default", "main_metric": "accuracy",
             "teacher": {"run_id": "t", "metric": 0.82}, "runs": [
                 {"key": f"{m}@0.9/seed42", "method": m, "sparsity": 0.9, "seed": 42, "metric": 0.8,
                  "metrics": {"accuracy": 0.8}, "measured_sparsity": 0.9, "recipe": {}, "wall_seconds": 1.0,
                  "teacher_id": "t", "steps": 12, "weights_story": records} for m in ("kasp", "magnitude")]}
    (tmp_path / "sst2.json").write_text(json.dumps(sweep))
    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / f"{t}.json")
    preset = view_presets("sst2")[0]
    assert preset["page"] == "pages/weights.py" and preset["params"]["run"] == "sweep/kasp@0.9/seed42"
    store = tmp_path / "store"
    store.mkdir()
    at = open_page("weights.py", store, monkeypatch, query=preset["params"])
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="weights_run").value == "sweep/kasp@0.9/seed42"
    assert at.radio(key="weights_kind").value == "FFN-in" and at.selectbox(key="weights_layer").value == 0
    zs, _ = _heatmaps(at)
    assert len(zs) == 2  # beside the magnitude run of the same sparsity


def test_the_partner_of_another_model_is_named_as_such_with_its_own_share_of_zeros():
    """A live run of a tiny model beside a shipped MiniLM run: the sentence compares shares of each matrix's own
    size (a percentage over 100 % came from dividing the other model's zeros by this one's size)."""
    import re

    import numpy as np

    from kasp.training import weights_story as ws

    def story(shape, zeros):
        rows, cols = shape
        kept = rows * cols - zeros
        hist = np.zeros((1, 1, 4), dtype=np.int64)
        hist[0, 0, 0] = kept
        grid = ws.cell_sizes(shape).shape
        return ws.Story(matrices=["0.Q"], shapes=[shape], grids=[grid], steps=np.array([10]), phases=["end"],
                        sparsity=np.array([zeros / (rows * cols)]), density=[[np.full(grid, kept / (rows * cols))]],
                        hist=hist, edges=np.linspace(0, 1, 5), threshold=np.array([[0.1]]))

    small, big = story((32, 32), 922), story((384, 384), 132710)
    text = ws.what_to_notice(small, 10, 0, "Q", other=big, other_index=0, labels=("kasp", "magnitude"))
    shares = [float(x) for x in re.findall(r"([\d.]+) % of its weights at zero", text)]
    assert shares and all(0 <= x <= 100 for x in shares) and "another model" in text


@pytest.mark.slow
def test_a_first_pruning_step_is_the_storys_start(tmp_path, tiny_store, tiny_pretrained):
    """With a first pruning step at step 0 (SST-2's default recipe: initial_sparsity 0.5, a recovery phase), the story
    starts with the student already pruned to it, once: the Weights page steps by step number, so no two records
    share one. The mask updates follow the schedule the app draws (kasp.spec.schedule.mask_update_steps)."""
    from kasp.ground.runs import RunDir
    from kasp.spec.config import make_config
    from kasp.spec.schedule import mask_update_steps
    from kasp.training.train import train

    shutil.copytree(tiny_store / "teacher", tmp_path / "teacher")
    cfg = make_config("prune", "kasp", "sst2", model=str(tiny_pretrained), sparsity=0.7, max_steps=12,
                      pruning_events=4, max_train_samples=128, max_eval_samples=32, eval_every=6, log_every=3,
                      initial_sparsity=0.5, recovery=0.2)
    run = RunDir.create(tmp_path / "kasp70")
    train(cfg, run, store=tmp_path, progress_bar=False)
    story = read_story(run.path)
    steps = [int(s) for s in story.steps]
    assert len(set(steps)) == len(steps) and steps == [0, *mask_update_steps(12, 4, 0.2, 0.5)[1:]]
    assert story.phases[0] == "start" and story.sparsity[0] == pytest.approx(0.5, abs=0.01)
    assert run.report()["pruning_events"] == len(mask_update_steps(12, 4, 0.2, 0.5))
