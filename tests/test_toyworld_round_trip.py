"""Renders before and after a VAE round trip, the ceiling the science and prior checks measure against."""

import torch

from bob.toyworld.pipeline import default_prior
from bob.toyworld.round_trip import random_scenes, vae_round_trip
from bob.toyworld.variants import FEWSHOT_VARIANTS


def test_scenes_are_seeded_and_keep_the_variants():
    variants = [FEWSHOT_VARIANTS[0], FEWSHOT_VARIANTS[3], FEWSHOT_VARIANTS[3]]
    scenes = random_scenes(variants, seed=5)
    assert [s.variant for s in scenes] == variants
    assert scenes == random_scenes(variants, seed=5) and scenes != random_scenes(variants, seed=6)


def test_round_trip_through_the_shipped_vae_stays_close_to_the_renders():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(default_prior(), subfolder="vae", dtype=torch.float32).eval()
    renders, decoded = vae_round_trip(vae, random_scenes(FEWSHOT_VARIANTS[:3], seed=0), batch_size=2)
    assert renders.shape == decoded.shape == (3, 3, 64, 64)
    assert 0.0 <= float(decoded.min()) and float(decoded.max()) <= 1.0
    error = (renders - decoded).abs().mean()
    assert error < 0.1  # the model card gives the reconstruction MSE on [-1, 1]
    assert error < (renders - renders.roll(1, dims=0)).abs().mean()  # closer to its own render than to another
