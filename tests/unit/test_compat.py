"""Recipes of older checkpoints: moved modules and options added since."""

from __future__ import annotations

from speechlab.checkpoint.compat import upgrade_recipe


def test_a_transducer_recipe_from_before_the_auxiliary_ctc_loss_gets_weight_zero():
    old = {"model": {"_target_": "speechlab.tasks.rnnt.RNNTTask", "max_joint_elements": 8}}
    assert upgrade_recipe(old)["model"] == {
        "_target_": "speechlab.tasks.rnnt.RNNTTask",
        "max_joint_elements": 8,
        "ctc_weight": 0.0,
    }


def test_a_recipe_that_has_the_option_keeps_its_value_and_moved_modules_are_renamed():
    recipe = {
        "model": {"_target_": "speechlab.tasks.rnnt.RNNTTask", "ctc_weight": 0.5},
        "frontend": {"_target_": "speechlab.features.LogMelFrontend"},
    }
    upgraded = upgrade_recipe(recipe)
    assert upgraded["model"]["ctc_weight"] == 0.5
    assert upgraded["frontend"]["_target_"] == "speechlab.audio.features.LogMelFrontend"
