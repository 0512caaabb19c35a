"""The Overview's sentence on the budget a small task would need at 90 % (issue 29): it quotes the recipe study's
longer run, shipped as assets/precomputed/longer_budgets.json by scripts/study_table.py --ship-budgets."""
from __future__ import annotations

import json

from tests.helpers import ROOT, load_script

SHIPPED = ROOT / "assets" / "precomputed" / "longer_budgets.json"


def test_the_shipped_file_is_the_study_files():
    st = load_script("study_table")
    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == json.loads(json.dumps(st.longer_budgets(ROOT / "bench" / "study"))), (
        "assets/precomputed/longer_budgets.json is stale: run .venv/bin/python scripts/study_table.py "
        "--ship-budgets assets/precomputed/longer_budgets.json")


def test_mrpc_sentence_quotes_its_runs_and_says_the_budget_is_not_enough():
    from kasp.ui.devset import majority_metric
    from kasp.ui.lesson import budget_need

    res = json.loads((ROOT / "bench" / "study" / "mrpc-base.json").read_text(encoding="utf-8"))
    runs = [e for e in res["runs"] if e["method"] == "kasp"]
    mean = sum(100 * e["metrics"]["f1"] for e in runs) / len(runs)
    floor = majority_metric("mrpc")
    text = budget_need("mrpc", floor)
    assert f"ends at F1 (positive class) {mean:.2f}" in text and "`mrpc-base`, 2 seeds" in text
    assert f"({100 * res['teacher']['metric']:.2f})" in text and "510 steps" in text
    assert mean < 100 * floor + 1 and "needs more than 5 epochs" in text
    best = max(runs[0]["progress"]["eval"], key=lambda p: p["metrics"]["f1"])  # seed 42's best point is the pair's
    assert f"at {100 * best['sparsity']:.0f} % sparsity" in text
    assert budget_need("sst2", 0.5) is None and budget_need("cola", 0.0) is None  # no longer run ships for them


def test_a_longer_run_that_learnt_the_task_claims_no_need(tmp_path):
    from kasp.ui.lesson import budget_need

    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    entry = data["tasks"]["mrpc"]
    entry["dev"] = {"42": 0.86, "43": 0.85}
    (tmp_path / "b.json").write_text(json.dumps(data))
    text = budget_need("mrpc", 0.8122, tmp_path / "b.json")
    assert "ends at F1 (positive class) 85.50" in text and "needs more" not in text and "floor" not in text
    assert text.endswith(f"KASP learns this task in {entry['epochs']:g} epochs with the default recipe.")
    for broken in ("{", "[]", json.dumps({"tasks": {"mrpc": {"dev": {}}}}), json.dumps({"tasks": None})):
        (tmp_path / "x.json").write_text(broken)
        assert budget_need("mrpc", 0.8122, tmp_path / "x.json") is None
    assert budget_need("mrpc", 0.8122, tmp_path / "missing.json") is None


def test_the_longest_line_that_changes_only_the_budget_is_the_one_quoted(tmp_path):
    """A longer line (``mrpc-epochs10``) replaces the base line in the shipped file; a line that also changes the
    recipe (a recovery phase), however long, does not: the sentence is about the default recipe's budget."""
    st = load_script("study_table")
    base = json.loads((ROOT / "bench" / "study" / "mrpc-base.json").read_text(encoding="utf-8"))
    (tmp_path / "mrpc-base.json").write_text(json.dumps(base))
    assert st.longer_budgets(tmp_path)["tasks"]["mrpc"]["line"] == "mrpc-base"
    longer = json.loads(json.dumps(base))
    longer["plan"]["budget"]["max_steps"] = 1020
    for e in longer["runs"]:
        e["steps"] = 1020
    (tmp_path / "mrpc-epochs10.json").write_text(json.dumps(longer))
    recipe = json.loads(json.dumps(longer))
    recipe["plan"]["budget"]["max_steps"] = 2040
    recipe["plan"]["overrides"]["recovery"] = 0.2
    (tmp_path / "mrpc-recovery-long.json").write_text(json.dumps(recipe))
    entry = st.longer_budgets(tmp_path)["tasks"]["mrpc"]
    assert entry["line"] == "mrpc-epochs10" and entry["steps"] == 1020 and entry["epochs"] == 10.0
