"""How a toy text-to-image model reads class names: text-encoder distinctness and the diffusion classifier."""

import pytest
import torch

from bob.toyworld.name_reading import class_prompt, diffusion_classifier_accuracy, name_distinctness
from bob.toyworld.pipeline import default_prior


@pytest.fixture(scope="module")
def prior():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(default_prior()), safety_checker=None, dtype=torch.float32)


def test_distinctness_is_zero_for_one_name_repeated_and_positive_for_different_names(prior):
    assert name_distinctness(prior, ["Deran", "Deran", "Deran"]) == pytest.approx(0.0, abs=1e-6)
    assert name_distinctness(prior, ["Deran", "Duzub", "Fatun"]) > 1e-3


def test_distinctness_needs_two_names(prior):
    with pytest.raises(ValueError, match="compares names"):
        name_distinctness(prior, ["Deran"])


def test_diffusion_classifier_scores_every_image_per_timestep(prior):
    pixels = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    result = diffusion_classifier_accuracy(prior, pixels, labels, ["Deran", "Duzub", "Fatun"], timesteps=(500, 900), batch_size=4)
    assert result["images"] == 6 and result["chance"] == pytest.approx(1 / 3)
    assert set(result["by_timestep"]) == {"500", "900"}
    for share in (*result["by_timestep"].values(), result["all_timesteps"]):
        assert share in {k / 6 for k in range(7)}


def test_diffusion_classifier_with_identical_prompts_ties_every_image_to_the_first_class(prior):
    # Same name for both classes: equal losses, so the argmin is the first class for every image,
    # and exactly the images labelled 0 count as read correctly.
    pixels = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    result = diffusion_classifier_accuracy(prior, pixels, torch.tensor([0, 0, 0, 1]), ["Deran", "Deran"], timesteps=(700,))
    assert result["all_timesteps"] == pytest.approx(0.75)


def test_class_prompt_is_the_class_only_form():
    assert class_prompt("Deran") == "an aircraft photo of a Deran"
