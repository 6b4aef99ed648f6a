"""A disk cache of real-image features, so several synthetic sets cost one pass over the real images."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from bob.atomic import atomic_write

log = logging.getLogger(__name__)


@dataclass
class CachedFeatures:
    """Features of the real images, in the datamodule's real-record order.

    Args:
        features: (n, d) float32.
        labels: (n,) class labels, to check the order on reading.
        contexts: the context reader's label of each image, when a reader was used.
    """

    features: torch.Tensor
    labels: torch.Tensor
    contexts: list[str] | None = None


class RealFeatureCache:
    """``<folder>/<key>.safetensors`` per (real images, feature extractor, image size, context reader).

    The key hashes everything that decides the features, so a changed split, extractor,
    weight file, transform or reader misses the cache instead of reusing stale features.

    Args:
        folder: where cache files live; shared by every synthetic set compared against a split.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(identity: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def path(self, identity: dict[str, Any]) -> Path:
        return self.folder / f"{self.key(identity)}.safetensors"

    def load(self, identity: dict[str, Any], expected_labels: torch.Tensor) -> CachedFeatures | None:
        """The cached features, or None when absent, unreadable or made for other images."""
        path = self.path(identity)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            with safe_open(path, framework="pt") as file:
                metadata = file.metadata() or {}
        except (SafetensorError, OSError) as error:
            log.warning("ignoring unreadable feature cache %s (%s); computing the features again", path, error)
            return None
        if json.loads(metadata.get("identity", "null")) != json.loads(json.dumps(identity, default=str)) or not torch.equal(
            tensors["labels"], expected_labels.cpu()
        ):
            log.warning("feature cache %s does not match the real images it is keyed by; computing them again", path)
            return None
        contexts = json.loads(metadata["contexts"]) if "contexts" in metadata else None
        return CachedFeatures(tensors["features"], tensors["labels"], contexts)

    def save(self, identity: dict[str, Any], cached: CachedFeatures) -> Path:
        path = self.path(identity)
        metadata = {"identity": json.dumps(identity, default=str)}
        if cached.contexts is not None:
            metadata["contexts"] = json.dumps(cached.contexts)
        tensors = {"features": cached.features.float().cpu().contiguous(), "labels": cached.labels.long().cpu().contiguous()}
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
