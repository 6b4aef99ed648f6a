"""Caches that skip frozen work during LoRA training: VAE latents per image view, text embeddings per prompt."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torchvision import transforms as v1
from torchvision.transforms import v2

#: Transforms whose output depends on the input alone, so one cached latent per image is exact.
_DETERMINISTIC = (
    v2.Resize, v2.CenterCrop, v2.ToImage, v2.ToDtype, v2.Normalize, v2.Identity, v2.PILToTensor,
    v1.Resize, v1.CenterCrop, v1.ToTensor, v1.PILToTensor, v1.Normalize, v1.ConvertImageDtype,
)


def is_deterministic(transform: Callable | None) -> bool:
    """True when ``transform`` is None or a composition of known deterministic transforms.

    Unknown transforms count as random: a wrong "random" only costs speed, a wrong
    "deterministic" would silently remove augmentation.
    """
    if transform is None:
        return True
    if isinstance(transform, (v2.Compose, v1.Compose)):
        return all(is_deterministic(t) for t in transform.transforms)
    return isinstance(transform, _DETERMINISTIC)


class LatentCache:
    """VAE posterior parameters of up to ``views`` augmented views per image, keyed by sample id.

    While an image has fewer than ``views`` cached views, its new view is encoded and kept;
    after that a cached view is drawn at random. The posterior is stored (not a sample), so
    every step still draws fresh latent noise, as without the cache.
    """

    def __init__(self, views: int):
        self.views = views
        self._store: dict[str, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._store.values())

    def is_full(self, sample_id: str) -> bool:
        """Whether ``sample_id`` has all its views, so its image is no longer needed."""
        return len(self._store.get(sample_id, ())) >= self.views

    def posterior(
        self, sample_ids: Sequence[str], images: torch.Tensor | None, encode: Callable[[torch.Tensor], torch.Tensor]
    ) -> DiagonalGaussianDistribution:
        """Posterior of each image: cached where full, else ``encode(images[i])`` (and cached).

        ``images`` may be None when every sample is full.
        """
        missing = [i for i, s in enumerate(sample_ids) if not self.is_full(s)]
        if missing and images is None:
            raise KeyError(f"no cached latents for {[sample_ids[i] for i in missing[:3]]} and no images to encode")
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            # Not images[missing]: a list index becomes a host tensor copied to the device, and waited for.
            chosen = images if len(missing) == len(images) else torch.stack([images[i] for i in missing])
            for index, encoded in zip(missing, encode(chosen), strict=True):
                self._store.setdefault(sample_ids[index], []).append(encoded)
                fresh[index] = encoded
        parameters = []
        for index, sample_id in enumerate(sample_ids):
            if index in fresh:
                parameters.append(fresh[index])
            else:
                cached = self._store[sample_id]
                parameters.append(cached[random.randrange(len(cached))] if len(cached) > 1 else cached[0])
        return DiagonalGaussianDistribution(torch.stack(parameters))


class TextEmbeddingCache:
    """Text-encoder outputs per prompt string, valid while the text encoders are frozen.

    ``encode`` returns a tuple of batched tensors (one per output: hidden states, and SD-XL's
    pooled embedding); the cache keeps each prompt's row of each and stacks them back.
    """

    def __init__(self):
        self._store: dict[str, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def embeddings(
        self, prompts: Sequence[str], encode: Callable[[list[str]], tuple[torch.Tensor, ...]]
    ) -> tuple[torch.Tensor, ...]:
        missing = sorted({p for p in prompts if p not in self._store})
        if missing:
            outputs = encode(missing)
            for row, prompt in enumerate(missing):
                self._store[prompt] = tuple(output[row] for output in outputs)
        stored = [self._store[p] for p in prompts]
        return tuple(torch.stack(column) for column in zip(*stored, strict=True))
