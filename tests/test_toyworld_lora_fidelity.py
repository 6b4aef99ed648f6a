"""`python -m bob.toyworld.lora_fidelity`: one class-only LoRA recipe, its synthetic set, and what the oracle and meter read."""

import json

import pytest

from bob.toyworld import lora_fidelity


@pytest.mark.slow
def test_lora_fidelity_runs_the_recipe_with_its_overrides_and_measures_the_set(tmp_path):
    out = tmp_path / "run"
    result = lora_fidelity.main(["--tiny", "--out", str(out), "--lora=--model.init_args.unet_rank=4"])

    manifest = json.loads((out / "lora" / "datadream" / "manifest.json").read_text())
    assert manifest["lora"]["unet"]["rank"] == 4  # the override reached the LoRA stage
    assert manifest["prompt_mode"] == "class"
    assert not (out / "classifier").exists()  # no classifier is trained
    synthetic = (out / "synthetic" / "datadream" / "manifest.jsonl").read_text().splitlines()
    assert result["images"] == len(synthetic) == 4 * 2  # the tiny world: 4 classes, 2 images each
    assert result["chance"] == 0.25
    assert 0.0 <= result["class_fidelity"] <= 1.0 and 0.0 <= result["home_rate"] <= 1.0
    assert result["lora_overrides"] == ["--model.init_args.unet_rank=4"]
    assert json.loads((out / "lora_fidelity.json").read_text()) == result
    reading = result["diffusion_classifier_on_shots"]
    shots = json.loads((out / "data" / "split.json").read_text())["train"]
    assert reading["images"] == len(shots) and reading["chance"] == 0.25  # every training shot, 4 classes
    assert set(reading["by_timestep"]) == {"300", "500", "700", "900"}
    assert 0.0 <= reading["all_timesteps"] <= 1.0 and result["name_distinctness"] > 0.0
