"""The context meter: tells a toy-world image's background from pixel statistics alone."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
from PIL import Image
from torch import Tensor

from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.render import Scene, render
from bob.toyworld.variants import FEWSHOT_VARIANTS, broad_variants

_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
_BORDER = 6


def background_features(image: Image.Image | np.ndarray) -> np.ndarray:
    """Colour quantiles of the border and of the whole image, texture, and top-to-bottom shading.

    The border is mostly background in every pose; quantiles rather than means so that a
    wing reaching the edge, or a blurry generated image, moves them little.
    """
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, np.float32) / 255.0
    border = np.concatenate(
        [pixels[:_BORDER].reshape(-1, 3), pixels[-_BORDER:].reshape(-1, 3),
         pixels[:, :_BORDER].reshape(-1, 3), pixels[:, -_BORDER:].reshape(-1, 3)]
    )
    grey = pixels.mean(axis=2)
    texture = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    shading = pixels[: pixels.shape[0] // 4].mean(axis=(0, 1)) - pixels[-pixels.shape[0] // 4 :].mean(axis=(0, 1))
    return np.concatenate(
        [np.quantile(border, _QUANTILES, axis=0).ravel(), np.quantile(pixels.reshape(-1, 3), _QUANTILES, axis=0).ravel(),
         [texture], shading]
    )


class ContextMeter:
    """Linear discriminant (shared covariance) over `background_features`, fitted on fresh renders.

    Args:
        renders_per_background: scenes rendered per background to fit the centroids.
        seed: seed of those scenes (disjoint from the datasets' scenes by construction of their seeds).
    """

    def __init__(self, renders_per_background: int = 60, seed: int = 12345):
        self.renders_per_background = renders_per_background
        self.seed = seed
        rng = random.Random(f"context-meter|{seed}")
        variants = list(broad_variants()) + list(FEWSHOT_VARIANTS)
        features, labels = [], []
        for background in range(len(BACKGROUNDS)):
            for _ in range(renders_per_background):
                scene = Scene(rng.choice(variants), background, rng.randrange(len(POSES)), rng.randrange(2**31))
                features.append(background_features(render(scene)))
                labels.append(background)
        features_array, labels_array = np.stack(features), np.asarray(labels)
        self.centroids = np.stack([features_array[labels_array == b].mean(axis=0) for b in range(len(BACKGROUNDS))])
        within = features_array - self.centroids[labels_array]
        covariance = within.T @ within / len(within)
        # A little ridge: some features (shading of flat backgrounds) barely vary within a class.
        self.precision = np.linalg.inv(covariance + 1e-4 * np.trace(covariance) / len(covariance) * np.eye(len(covariance)))

    def predict(self, images: Iterable[Image.Image | np.ndarray]) -> np.ndarray:
        """Background index (into `BACKGROUNDS`) of every image."""
        features = np.stack([background_features(image) for image in images])
        offsets = features[:, None, :] - self.centroids[None]
        distances = np.einsum("nbi,ij,nbj->nb", offsets, self.precision, offsets)
        return distances.argmin(axis=1)

    def __call__(self, image: Tensor) -> str:
        """Background name of one float CHW image in [0, 1]: the context reader of `SyntheticQuality`."""
        pixels = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return BACKGROUNDS[int(self.predict([pixels])[0])].name

    def __repr__(self) -> str:
        # Names the fit in the quality module's real-feature cache key.
        return f"ContextMeter(renders_per_background={self.renders_per_background}, seed={self.seed})"

    def predict_names(self, images: Iterable[Image.Image | np.ndarray]) -> list[str]:
        return [BACKGROUNDS[i].name for i in self.predict(images)]
