"""Fakes for the quality tests: a tiny fixed feature extractor, a context reader, synthetic set folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bob.data.generation_plan import PlanItem, item_key
from bob.data.synthetic_set import SyntheticSetFolder
from bob.metrics.extractors import FeatureExtractor


class TinyFeatures(FeatureExtractor):
    """A fixed random projection of 4 x 4 average-pooled pixels: cheap, deterministic, and
    sensitive to colour and layout, which is all the FID/KID bookkeeping tests need.

    Args:
        dim: feature size.
        seed: seed of the projection.
    """

    short_name = "tiny"

    def __init__(self, dim: int = 8, seed: int = 0):
        super().__init__()
        self.dim = dim
        self.seed = seed

    def load(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.register_buffer("projection", torch.randn(3 * 16, self.dim, generator=generator))
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        return {"extractor": "TinyFeatures", "dim": self.dim, "seed": self.seed}

    def extract(self, images: Tensor) -> Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        return pooled @ self.projection


def brightness_context(image: Tensor) -> str:
    """A context reader: ``bright`` or ``dark`` by mean pixel value."""
    return "bright" if float(image.mean()) > 0.5 else "dark"


class ToyMeterReader:
    """The toy world's `ContextMeter` as a context reader: image tensor -> background name."""

    def __init__(self) -> None:
        from bob.toyworld.meter import ContextMeter

        self.meter = ContextMeter()

    def __call__(self, image: Tensor) -> str:
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return self.meter.predict_names([pixels])[0]


def solid_image(value: int, size: int = 16, seed: int = 0) -> Image.Image:
    """A grey image of about ``value`` with a little noise (so features vary within a set)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(value + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def write_synthetic_set(
    folder: Path,
    class_names: Sequence[str],
    images: dict[str, Sequence[Image.Image | Path]],
    context_sources: dict[str, Sequence[str]] | None = None,
    declared_classes: Sequence[str] | None = None,
) -> Path:
    """A finished synthetic set in the generation stage's layout, written by its own writer.

    Args:
        folder: output folder.
        class_names: the dataset's classes (labels are positions in this list).
        images: class name -> its images (PIL images or files to copy).
        context_sources: class name -> the caption-bank sample id each image's context came from.
        declared_classes: class names the manifest declares (default: the keys of ``images``).
    """
    writer = SyntheticSetFolder(folder)
    summary = {"class_names": list(declared_classes or images)}
    writer.start({"recipe": "test"}, summary)
    keys = []
    for class_name, pictures in images.items():
        label = class_names.index(class_name) if class_name in class_names else len(class_names)
        for index, picture in enumerate(pictures):
            source = (context_sources or {}).get(class_name, [None] * len(pictures))[index]
            item = PlanItem(
                key=item_key(label, index), label=label, class_name=class_name, index=index, seed=index,
                prompt=f"a photo of a {class_name}", context={}, context_source=source,
            )
            writer.write(item, picture if isinstance(picture, Image.Image) else Image.open(picture).convert("RGB"), {})
            keys.append(item.key)
    writer.finish(keys, summary)
    return folder
