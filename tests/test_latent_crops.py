"""Random crops on the latent grid: which transforms qualify, what a crop is, and a fit that never runs the VAE encoder."""

import pytest
import torch
from torchvision.transforms import v2

from bob.cli import main
from bob.data.errors import BobInputError
from bob.modules.diffusion.latent_crops import LatentCropCache, split_random_crop, trim_to_grid
from tests.t2i_fixtures import fit_config, make_world, one_torch_thread  # noqa: F401

RESIZE_THEN_CROP = {
    "class_path": "torchvision.transforms.v2.Compose",
    "init_args": {
        "transforms": [
            {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": [72, 90], "antialias": True}},
            {"class_path": "torchvision.transforms.v2.RandomCrop", "init_args": {"size": 64}},
        ]
    },
}


@pytest.fixture
def encoded_shapes(monkeypatch):
    """The input shape of every `AutoencoderKL.encode` call while a test runs."""
    from diffusers import AutoencoderKL

    shapes = []
    original = AutoencoderKL.encode

    def counting_encode(self, pixels, *args, **kwargs):
        shapes.append(tuple(pixels.shape))
        return original(self, pixels, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", counting_encode)
    return shapes


def test_only_deterministic_steps_then_a_square_unpadded_random_crop_qualify():
    prefix, size = split_random_crop(v2.Compose([v2.Resize(80), v2.RandomCrop(64)]))
    assert size == 64 and isinstance(prefix.transforms[0], v2.Resize)
    assert split_random_crop(v2.RandomCrop(32)) == (None, 32)
    for transform in (
        v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(80), v2.RandomCrop(64)]),  # random before the crop
        v2.Compose([v2.Resize(64), v2.CenterCrop(64)]),  # no random crop at all
        v2.Compose([v2.Resize(80), v2.RandomCrop(64, padding=4)]),
        v2.Compose([v2.Resize(80), v2.RandomCrop((64, 48))]),
    ):
        with pytest.raises(BobInputError, match="latent_crops"):
            split_random_crop(transform)


def test_trim_to_grid_centres_and_refuses_images_smaller_than_the_crop():
    image = torch.arange(3 * 13 * 21).reshape(3, 13, 21)
    trimmed = trim_to_grid(image, 8, 8, "x.jpg")
    assert trimmed.shape == (3, 8, 16)
    assert torch.equal(trimmed, image[:, 2:10, 2:18])
    with pytest.raises(BobInputError, match="x.jpg: 21x13 after resizing is smaller than the 16 px"):
        trim_to_grid(image, 8, 16, "x.jpg")


def test_crops_are_windows_of_the_cached_posterior_at_every_offset():
    cache = LatentCropCache(crop_size=16, factor=8)
    parameters = torch.randn(8, 3, 5)  # 2C x h x w: 3 x 5 latents, crop 2 x 2
    cache.add("a", parameters)
    with pytest.raises(BobInputError, match="multiple"):
        LatentCropCache(crop_size=12, factor=8)
    with pytest.raises(KeyError, match="b"):
        cache.posterior(["b"])
    seen = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        window = cache.posterior(["a"], generator).parameters[0]
        matches = [
            (top, left) for top in range(2) for left in range(4)
            if torch.equal(window, parameters[:, top:top + 2, left:left + 2])
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {(top, left) for top in range(2) for left in range(4)}  # uniform offsets reach every one


def test_fit_encodes_each_training_image_once_and_serves_no_images(tmp_path, tiny_sd_path, encoded_shapes):
    world = make_world(tmp_path, shots=2)
    config = fit_config(
        tmp_path, world, tiny_sd_path, model={"latent_crops": True}, trainer={"max_steps": 3},
        data={"train_transform": RESIZE_THEN_CROP},
    )
    cli = main(["fit", "-c", str(config)])
    assert cli.trainer.global_step == 3
    cache = cli.model.latent_crop_cache
    train_ids = {r.sample_id for r in cli.datamodule.split.train}
    assert len(cache) == len(train_ids) == 6
    # Once per image, before training, at the resized size trimmed to the grid (90 -> 88).
    assert encoded_shapes == [(1, 3, 72, 88)] * 6
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert "image" not in batch and set(batch["sample_id"]) <= train_ids
    latents = cli.model.latents(batch)
    assert latents.shape == (2, 4, 8, 8) and torch.isfinite(latents).all()


def test_latent_crops_refuse_a_transform_without_random_crop_and_a_second_cache(tmp_path, tiny_sd_path):
    world = make_world(tmp_path, shots=2)
    with pytest.raises(BobInputError, match="ending in RandomCrop"):
        main(["fit", "-c", str(fit_config(tmp_path, world, tiny_sd_path, model={"latent_crops": True}))])
    both = fit_config(
        tmp_path, world, tiny_sd_path, model={"latent_crops": True, "latent_cache_views": 2},
        data={"train_transform": RESIZE_THEN_CROP},
    )
    with pytest.raises(BobInputError, match="latent_cache_views=2 both cache"):
        main(["fit", "-c", str(both)])


def test_exact_latent_cache_encodes_every_image_before_training_and_then_loads_none(tmp_path, tiny_sd_path, encoded_shapes):
    world = make_world(tmp_path, shots=2)
    config = fit_config(tmp_path, world, tiny_sd_path, trainer={"max_steps": 3})  # Resize + CenterCrop: exact
    cli = main(["fit", "-c", str(config)])
    assert cli.trainer.global_step == 3 and len(cli.model.latent_cache) == 6
    assert encoded_shapes == [(1, 3, 64, 64)] * 6  # once per image, none in the 3 steps
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert "image" not in batch
    assert cli.model.latents(batch).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("vae_latents", ["sample", "mean"])
def test_vae_latents_draws_from_the_posterior_or_takes_its_mean(tmp_path, tiny_sd_path, vae_latents):
    world = make_world(tmp_path, shots=2)
    config = fit_config(tmp_path, world, tiny_sd_path, trainer={"max_steps": 1}, model={"vae_latents": vae_latents})
    cli = main(["fit", "-c", str(config)])
    model = cli.model
    batch = next(iter(cli.datamodule.train_dataloader()))
    posterior = model.latent_cache.posterior(list(batch["sample_id"]), None, model._posterior_parameters)
    mean = posterior.mean * model.vae.config.scaling_factor
    first, second = model.latents(batch), model.latents(batch)
    if vae_latents == "mean":
        assert torch.equal(first, mean) and torch.equal(second, mean)
    else:
        assert not torch.allclose(first, second) and not torch.allclose(first, mean)


def test_vae_latents_refuses_an_unknown_choice():
    from bob.modules.diffusion.finetuner import LoRAFineTuner

    with pytest.raises(ValueError, match="vae_latents='mode'"):
        LoRAFineTuner(vae_latents="mode")
