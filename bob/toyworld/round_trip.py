"""Fresh renders before and after a round trip through a prior's VAE: the most any generator on
that prior can show of a variant's details."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.render import Scene, render
from bob.toyworld.variants import Variant


def random_scenes(variants: Sequence[Variant], seed: int) -> list[Scene]:
    """One scene per entry of ``variants``, background and pose uniform."""
    rng = random.Random(seed)
    return [Scene(v, rng.randrange(len(BACKGROUNDS)), rng.randrange(len(POSES)), rng.randrange(2**31)) for v in variants]


def render_tensor(scenes: Sequence[Scene]) -> Tensor:
    """The renders of ``scenes`` as one float N x 3 x H x W tensor in [0, 1]."""
    return torch.from_numpy(np.stack([np.asarray(render(s), np.float32) for s in scenes])).permute(0, 3, 1, 2) / 255


@torch.no_grad()
def vae_round_trip(vae, scenes: Sequence[Scene], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The renders of ``scenes`` and the same images encoded and decoded by ``vae`` (a diffusers
    `AutoencoderKL`), both float N x 3 x H x W in [0, 1]."""
    renders = render_tensor(scenes)
    decoded = torch.cat([vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample for x in renders.split(batch_size)])
    return renders, ((decoded + 1) / 2).clamp(0, 1)


@torch.no_grad()
def posterior_spread(vae, scenes: Sequence[Scene], batch_size: int = 64) -> dict[str, float]:
    """How wide ``vae``'s posterior is next to the spread of its means, on the renders of ``scenes``.

    ``posterior_std`` is the posterior's standard deviation averaged over latent elements,
    ``mean_std`` the standard deviation of the posterior means over all images and elements
    (both unscaled). A ratio near 0 makes a draw from the posterior its mean; the toy prior's UNet
    is pretrained on means, so a wide posterior matters to whatever trains on draws.
    """
    renders = render_tensor(scenes)
    posteriors = [vae.encode(x * 2 - 1).latent_dist for x in renders.split(batch_size)]
    return {
        "posterior_std": float(torch.cat([p.std for p in posteriors]).mean()),
        "mean_std": float(torch.cat([p.mean for p in posteriors]).std()),
    }


def load_prior_vae(folder: str):
    """The `AutoencoderKL` of a toy prior: a pipeline folder (its ``vae/``) or a VAE folder itself."""
    from pathlib import Path

    from diffusers import AutoencoderKL

    subfolder = "vae" if (Path(folder) / "vae").is_dir() else None
    return AutoencoderKL.from_pretrained(folder, subfolder=subfolder, dtype=torch.float32).eval()


def oracle_round_trip_accuracy(vae, oracle, per_class: int = 20, seed: int = 4242) -> float:
    """Share of fresh few-shot-class renders (uniform contexts) that ``oracle`` (a
    `bob.toyworld.oracle.ClassOracle`) still reads as their class after ``vae`` encodes and
    decodes them: the most any generator on that autoencoder can reach."""
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    labels = np.repeat(np.arange(len(FEWSHOT_VARIANTS)), per_class)
    _, decoded = vae_round_trip(vae, random_scenes([FEWSHOT_VARIANTS[c] for c in labels], seed))
    images = (decoded * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return float(np.mean(oracle.predict(images) == labels))
