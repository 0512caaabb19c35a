"""A recipe adopted from the recipe study (kasp.spec.config.ADOPTED) is the default of its (method, task) only, and
gives way where the given fields rule it out instead of refusing the run."""
import pytest

from kasp.spec import config


@pytest.fixture
def adopted(monkeypatch):
    monkeypatch.setitem(config.ADOPTED, ("kasp", "sst2"), {"lr": 4e-4, "initial_sparsity": 0.5, "recovery": 0.2,
                                                          "init_embeddings": "teacher"})


def test_the_adopted_recipe_is_its_tasks_default_only(adopted):
    cfg = config.make_config("prune", "kasp", "sst2", sparsity=0.9)
    assert (cfg.lr, cfg.initial_sparsity, cfg.recovery, cfg.init_embeddings) == (4e-4, 0.5, 0.2, "teacher")
    other = config.make_config("prune", "kasp", "qnli", sparsity=0.9)  # a task with no adopted entry
    assert (other.lr, other.initial_sparsity, other.init_embeddings) == (1e-4, 0.0, "pretrained")
    small = config.make_config("prune", "kasp", "rte", sparsity=0.9)  # carried: the recipe, not SST-2's step budget
    assert (small.lr, small.initial_sparsity, small.recovery, small.max_steps, small.epochs) == (4e-4, 0.5, 0.2, None, 5.0)
    magnitude = config.make_config("prune", "magnitude", "sst2", sparsity=0.9)
    assert (magnitude.lr, magnitude.initial_sparsity) == (1e-4, 0.0)
    assert config.make_config("prune", "kasp", "sst2", sparsity=0.9, lr=1e-4).lr == 1e-4  # a given value wins


def test_an_adopted_first_step_is_capped_at_a_lower_target(adopted):
    assert config.make_config("prune", "kasp", "sst2", sparsity=0.3).initial_sparsity == 0.3
    assert config.make_config("prune", "kasp", "sst2").initial_sparsity == 0.0   # sparsity 0: no pruning at all
    with pytest.raises(ValueError, match="initial_sparsity"):  # given, it is the user's: refused, not changed
        config.make_config("prune", "kasp", "sst2", sparsity=0.3, initial_sparsity=0.5)


def test_teacher_embeddings_give_way_to_a_fine_tuned_student(adopted):
    cfg = config.make_config("prune", "kasp", "sst2", sparsity=0.9, init="finetuned")
    assert cfg.init_embeddings == "pretrained"
    with pytest.raises(ValueError, match="init_embeddings"):
        config.make_config("prune", "kasp", "sst2", sparsity=0.9, init="finetuned", init_embeddings="teacher")


def test_frozen_word_embeddings_keep_the_pretrained_start(adopted):
    """--freeze-word-embeddings keeps the pre-trained word-embedding matrix so that a compact export can share it:
    the adopted teacher-embedding start gives way to it, unless asked for by name."""
    assert config.make_config("prune", "kasp", "sst2", sparsity=0.9,
                              freeze_word_embeddings=True).init_embeddings == "pretrained"
    assert config.make_config("prune", "kasp", "sst2", sparsity=0.9, freeze_word_embeddings=True,
                              init_embeddings="teacher").init_embeddings == "teacher"


def test_captions_name_recipe_settings_in_words():
    """The Prune page's adopted-recipe caption and a run's recipe-difference caption write settings in words, not
    field names: SST-2's adopted recipe reads as steps, learning rate, first step, recovery phase and embeddings."""
    from kasp.spec.config import ADOPTED, describe_settings, setting_value

    text = describe_settings(ADOPTED[("kasp", "sst2")])
    for words in ("learning rate 4e-4", "first pruning step to 50 % at step 0", "prediction weight 3",
                  "recovery phase the last 20 % of the steps", "student embeddings from the teacher", "steps 2,500"):
        assert words in text
    assert "_" not in text
    assert setting_value("lr", 1e-4) == "1e-4" and setting_value("lr", 3e-5) == "3e-5"
    assert setting_value("recovery", 0.0) == "none" and setting_value("initial_sparsity", 0.0) == "none"
    assert setting_value("init_embeddings", "pretrained") == "from the pre-trained model"


def test_the_adopted_caption_says_when_the_shipped_sweep_used_another_recipe(monkeypatch):
    """The Prune page's adopted-recipe note adds that the Overview's sweep used the earlier recipe only when its
    runs of the method differ from the adopted settings."""
    from kasp.spec.config import ADOPTED
    from kasp.ui import launch

    adopted = {k: v for k, v in ADOPTED[("kasp", "mrpc")].items()}
    old = {"runs": [{"method": "kasp", "recipe": {**adopted, "lr": 1e-4}}]}
    new = {"runs": [{"method": "kasp", "recipe": dict(adopted)}, {"method": "magnitude", "recipe": {"lr": 1e-4}}]}
    monkeypatch.setattr(launch, "load_shipped", lambda task: old)
    assert "made with the earlier recipe" in launch.adopted_recipe_caption("kasp", "mrpc")
    monkeypatch.setattr(launch, "load_shipped", lambda task: new)
    assert "earlier recipe" not in launch.adopted_recipe_caption("kasp", "mrpc")


def test_the_overview_says_where_a_default_recipe_comes_from():
    from kasp.ui.launch import recipe_origin

    assert recipe_origin("kasp", "mrpc") == recipe_origin("kasp", "sst2") == "chosen by the recipe study"
    assert recipe_origin("kasp", "cola") == "carried from the recipe study of other tasks, not studied on CoLA"
    assert recipe_origin("magnitude", "sst2") == "the method's own recipe"
