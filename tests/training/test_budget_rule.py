"""One rule for budgets (kasp.spec.config.layer_budget), used by make_config (so the app's Launch) and the CLI."""

import pytest

from kasp.spec.config import layer_budget, make_config


def test_a_given_time_budget_replaces_the_base_step_budget_and_steps_or_epochs_replace_a_time_budget():
    base = {"max_steps": 2000, "epochs": 5.0}
    assert layer_budget(base, {"time_budget": 15}) == {"epochs": 5.0, "time_budget": 15}
    assert layer_budget({"time_budget": 15, "epochs": 5.0}, {"max_steps": 300}) == {"epochs": 5.0, "max_steps": 300}
    assert layer_budget({"time_budget": 15}, {"epochs": 3.0}) == {"epochs": 3.0}
    assert layer_budget(base, {"time_budget": None, "lr": 2e-4}) == base | {"lr": 2e-4}  # None: not given
    assert make_config("prune", "kasp", "sst2", time_budget=10).max_steps is None
    assert make_config("prune", "magnitude", "sst2").max_steps == 2000
    assert make_config("prune", "kasp", "sst2").max_steps == 2500  # the recipe study's adopted budget (ADOPTED)
    # epochs given replace SST-2's default step count (the loop counts max_steps first: it was silently kept)
    assert layer_budget(base, {"epochs": 1.0}) == {"epochs": 1.0}
    assert make_config("prune", "kasp", "sst2", sparsity=0.9, epochs=1.0).max_steps is None
    assert make_config("prune", "kasp", "sst2", sparsity=0.9, epochs=1.0, max_steps=30).max_steps == 30


def test_the_cli_layers_its_flags_over_a_recipe_file_by_the_same_rule(tmp_path):
    from kasp.cli import build_parser, config_from_args

    recipe = tmp_path / "r.json"
    recipe.write_text('{"task": "sst2", "sparsity": 0.9, "time_budget": 12}')
    args = build_parser().parse_args(["prune", "--recipe", str(recipe), "--epochs", "2"])
    cfg = config_from_args(args)
    assert cfg.time_budget is None and cfg.epochs == 2.0  # the flag given wins over the file's budget
    args = build_parser().parse_args(["prune", "--recipe", str(recipe), "--max-steps", "40"])
    assert config_from_args(args).max_steps == 40 and config_from_args(args).time_budget is None
    with pytest.raises(Exception, match="not both"):
        config_from_args(build_parser().parse_args(["prune", "--task", "sst2", "--sparsity", "0.9",
                                                    "--max-steps", "5", "--time-budget", "3"]))
