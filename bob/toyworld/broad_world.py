"""The broad pretraining world as a DataModule: a fixed pool of rendered scenes, captions drawn per step."""

from __future__ import annotations

import hashlib
import inspect
import logging
import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bob.atomic import atomic_write
from bob.toyworld import contexts as contexts_module
from bob.toyworld import render as render_module
from bob.toyworld.captions import broad_caption
from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.render import IMAGE_SIZE, Scene, render_with_mask
from bob.toyworld.variants import broad_variants

log = logging.getLogger(__name__)


def broad_scenes(pool_size: int, seed: int, num_variants: int) -> list[Scene]:
    """``pool_size`` scenes of broad variants with uniformly drawn backgrounds and poses."""
    rng = random.Random(f"broad-scenes|{seed}")
    variants = broad_variants(num_variants)
    return [
        Scene(rng.choice(variants), rng.randrange(len(BACKGROUNDS)), rng.randrange(len(POSES)), rng.randrange(2**31))
        for _ in range(pool_size)
    ]


class _PoolDataset(Dataset):
    def __init__(self, scenes: list[Scene], images: torch.Tensor, masks: torch.Tensor, empty_caption_probability: float):
        self.scenes = scenes
        self.images = images
        self.masks = masks
        self.empty_caption_probability = empty_caption_probability

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        # A fresh phrasing every time an image comes round, drawn from torch's seeded generator.
        rng = random.Random(int(torch.randint(2**31, ())))
        return {
            "image": self.images[index].float() / 255.0,
            "mask": self.masks[index].float() / 255.0,
            "caption": broad_caption(self.scenes[index], rng, self.empty_caption_probability),
            "index": index,
        }


def render_pool(scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N x 3 x H x W) and aircraft masks (N x 1 x H x W, 255 = covered) of ``scenes``."""
    images = torch.empty((len(scenes), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    masks = torch.empty((len(scenes), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for i, scene in enumerate(tqdm(scenes, desc="rendering the broad world", unit="img")):
        image, mask = render_with_mask(scene)
        images[i] = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
        masks[i, 0] = torch.from_numpy((mask * 255).round().astype(np.uint8))
    return images, masks


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with path.open("wb") as handle:  # a file object: np.savez would append ".npz" to a path
        np.savez(handle, **arrays)


class BroadWorldDataModule(LightningDataModule):
    """Renders the broad world once and serves ``image`` / ``mask`` / ``caption`` / ``index`` batches.

    ``mask`` is the aircraft's coverage of each pixel (1 x H x W in [0, 1]).

    Captions name a broad variant's family or model name, its background and its pose, in
    the prompt forms of the few-shot stages; the few-shot classes never appear.

    Args:
        pool_size: number of distinct rendered scenes (kept in memory as uint8).
        seed: seed of the pool; the same seed renders the same images.
        num_variants: how many broad variants the pool draws from.
        batch_size: images per training batch.
        empty_caption_probability: share of empty captions, which teaches the unconditional
            prediction classifier-free guidance needs.
        num_workers: dataloader worker processes.
        cache_dir: folder for the rendered pool (``.npz``, uint8), reused by every later run
            with the same pool, seed and renderer; None renders it each time (about 26 s on one
            CPU thread at 16,384 images; reading the 268 MB file back takes a few seconds).
    """

    def __init__(
        self,
        pool_size: int = 16384,
        seed: int = 0,
        num_variants: int = 256,
        batch_size: int = 32,
        empty_caption_probability: float = 0.08,
        num_workers: int = 0,
        cache_dir: str | None = None,
    ):
        super().__init__()
        self.pool_size = pool_size
        self.seed = seed
        self.num_variants = num_variants
        self.batch_size = batch_size
        self.empty_caption_probability = empty_caption_probability
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self._dataset: _PoolDataset | None = None

    def setup(self, stage: str) -> None:
        if self._dataset is not None:
            return
        scenes = broad_scenes(self.pool_size, self.seed, self.num_variants)
        cache = self.pool_cache_file(scenes)
        if cache is not None and cache.is_file():
            with np.load(cache) as stored:
                images, masks = torch.from_numpy(stored["images"]), torch.from_numpy(stored["masks"])
            log.info("broad world: %d rendered scenes read from %s", len(scenes), cache)
        else:
            images, masks = render_pool(scenes)
            if cache is not None:
                atomic_write(cache, lambda tmp: _save_npz(tmp, images=images.numpy(), masks=masks.numpy()))
        self._dataset = _PoolDataset(scenes, images, masks, self.empty_caption_probability)

    def pool_cache_file(self, scenes: list[Scene]) -> Path | None:
        """The cache file of this pool: named by a hash of its scenes and of the renderer's code,
        so a changed world or renderer never reads a stale pool."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(repr(scenes).encode())
        for module in (render_module, contexts_module):
            digest.update(inspect.getsource(module).encode())
        return Path(self.cache_dir) / f"broad_pool_{len(scenes)}_{digest.hexdigest()[:16]}.npz"

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self._dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
