"""Classifying images with a trained classifier checkpoint alone: ``bob.classify``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bob.data.image_list import list_images
from bob.data.images import load_uint8
from bob.modules.classifier.module import Classifier
from bob.modules.classifier.predictions import top_k_rows


def load_classifier(checkpoint: str | Path, device: str | torch.device | None = None) -> Classifier:
    """A `Classifier` from its checkpoint, in eval mode on ``device`` (CUDA when there is one)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Classifier.load_from_checkpoint(checkpoint, map_location="cpu").eval().to(device)


@torch.inference_mode()
def classify(
    checkpoint: str | Path | Classifier,
    images: str | Path | Sequence[str | Path],
    top_k: int = 5,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """The ``top_k`` most probable classes of each image, from a classifier checkpoint alone.

    Args:
        checkpoint: a checkpoint written by a classifier run (or a loaded `Classifier`).
        images: a folder (searched recursively), a text file with one path a line, one image,
            or a list of image paths.
        top_k: classes per image, most probable first.
        batch_size: images per forward pass.
        device: where to run; None picks CUDA when available.

    Returns:
        one row per image, in input order:
        ``{"image": path, "predictions": [{"label", "class_name", "probability"}, ...]}``.
    """
    model = checkpoint if isinstance(checkpoint, Classifier) else load_classifier(checkpoint, device)
    names = model.class_names or model.prompt_names
    paths = list_images(images)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        pixels = model.preprocess([load_uint8(path) for path in batch]).to(model.device)
        probabilities = model(pixels).float().softmax(dim=-1)
        rows += top_k_rows([str(path) for path in batch], probabilities, names, top_k)
    return rows
