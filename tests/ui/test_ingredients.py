"""The 2 x 2 of student start x loss (issue 24 item 5) on the Overview: its cells from the shipped study file, a
caption generated from the numbers, and a chart whose bars and error bars are the cells'."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kasp.ui.figures import ingredients_caption, ingredients_figure
from kasp.ui.tables import ingredient_cells


def _cells(values: dict[tuple[str, str], tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"start": s, "loss": l, "line": f"{s}-{l}", "mean": m, "spread": sp, "n": 2, "selection": m + 3}
                         for (s, l), (m, sp) in values.items()])


def test_the_caption_calls_a_lead_only_beyond_the_seed_spread_and_names_missing_cells():
    cells = _cells({("pre-trained", "distillation"): (86.2, 0.1), ("fine-tuned", "distillation"): (83.0, 0.2),
                    ("pre-trained", "task labels"): (82.9, 0.3)})
    text = ingredients_caption(cells)
    assert "with distillation: +3.20 points, beyond the seed spread (±0.30)" in text
    assert "from the pre-trained model: +3.30 points, beyond the seed spread (±0.40)" in text
    assert "Not measured yet: fine-tuned start with task labels" in text
    close = _cells({("pre-trained", "distillation"): (86.2, 0.5), ("fine-tuned", "distillation"): (86.0, 0.4)})
    assert "+0.20 points, within the seed spread (±0.90)" in ingredients_caption(close)


def test_with_only_the_two_methods_cells_the_caption_compares_them_and_says_why_it_cannot_split_them():
    diagonal = _cells({("pre-trained", "distillation"): (86.24, 0.11), ("fine-tuned", "task labels"): (84.29, 0.34)})
    text = ingredients_caption(diagonal)
    assert "magnitude baseline's (fine-tuned start, task labels): +1.95 points, beyond the seed spread (±0.45)" in text
    assert "differ in both ingredients" in text
    full = _cells({("pre-trained", "distillation"): (86.2, 0.1), ("fine-tuned", "task labels"): (84.3, 0.3),
                   ("fine-tuned", "distillation"): (85.0, 0.2)})
    assert "differ in both ingredients" not in ingredients_caption(full)  # a pair answers it: no diagonal sentence


def test_with_all_four_cells_the_caption_opens_with_the_ingredient_that_moves_the_score_more():
    four = _cells({("pre-trained", "distillation"): (86.2, 0.1), ("fine-tuned", "distillation"): (86.8, 0.2),
                   ("pre-trained", "task labels"): (83.8, 0.3), ("fine-tuned", "task labels"): (84.3, 0.3)})
    text = ingredients_caption(four)
    assert text.startswith("Here the loss (distilling the teacher) matters more: distilling instead of training on "
                           "the labels moves the score +2.45 points on average over the two starts, starting from the "
                           "pre-trained model instead of the fine-tuned one -0.55 on average")
    start_wins = _cells({("pre-trained", "distillation"): (88.0, 0.1), ("fine-tuned", "distillation"): (84.0, 0.2),
                         ("pre-trained", "task labels"): (87.0, 0.3), ("fine-tuned", "task labels"): (83.5, 0.3)})
    assert ingredients_caption(start_wins).startswith("Here the start (the pre-trained model) matters more")
    assert not ingredients_caption(four.iloc[:3]).startswith("Here")


def test_the_chart_draws_each_cell_with_its_spread_from_near_the_data():
    cells = _cells({("pre-trained", "distillation"): (86.2, 0.1), ("fine-tuned", "task labels"): (82.5, 0.4)})
    fig = ingredients_figure(cells, teacher=0.884)
    pts = {t.name: t for t in fig.data}
    assert list(pts["loss: distillation"].y) == [86.2] and round(pts["loss: distillation"].x[0]) == 0  # pre-trained
    assert list(pts["loss: task labels"].error_y.array) == [0.4] and round(pts["loss: task labels"].x[0]) == 1
    assert all(t.type == "scatter" for t in fig.data)  # points, not bars, on an axis that does not start at 0
    lo, hi = fig.layout.yaxis.range
    assert 50 < lo < 82.1 and hi > 88.4  # near the data and the teacher line, not from 0


def test_the_shipped_cells_are_the_study_files(tmp_path):
    """Each cell the app shows is the mean of its study line's seeds (bench/study); other tasks have none."""
    from tests.helpers import ROOT

    cells, meta = ingredient_cells("sst2")
    assert len(cells) >= 1 and meta["sparsity"] == 0.9 and meta["recipe"]["max_steps"] == 2000
    for r in cells.itertuples():
        runs = json.loads((ROOT / "bench" / "study" / f"{r.line}.json").read_text())["runs"]
        method = "kasp" if r.start == "pre-trained" else "magnitude"
        dev = [100 * e["metrics"]["accuracy"] for e in runs if e["method"] == method]
        assert r.n == len(dev) and r.mean == pytest.approx(sum(dev) / len(dev))
    assert ingredient_cells("mrpc")[0].empty
    (tmp_path / "bad.json").write_text("{not json")
    assert ingredient_cells("sst2", tmp_path / "bad.json")[0].empty  # a damaged file: nothing drawn, no error
