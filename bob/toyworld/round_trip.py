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


@torch.no_grad()
def vae_round_trip(vae, scenes: Sequence[Scene], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The renders of ``scenes`` and the same images encoded and decoded by ``vae`` (a diffusers
    `AutoencoderKL`), both float N x 3 x H x W in [0, 1]."""
    renders = torch.from_numpy(np.stack([np.asarray(render(s), np.float32) for s in scenes])).permute(0, 3, 1, 2) / 255
    decoded = torch.cat([vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample for x in renders.split(batch_size)])
    return renders, ((decoded + 1) / 2).clamp(0, 1)
