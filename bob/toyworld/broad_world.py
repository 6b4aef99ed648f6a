"""The broad pretraining world as a DataModule: a fixed pool of rendered scenes, captions drawn per step."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bob.toyworld.captions import broad_caption
from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.render import IMAGE_SIZE, Scene, render_with_mask
from bob.toyworld.variants import broad_variants


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
    """

    def __init__(
        self,
        pool_size: int = 16384,
        seed: int = 0,
        num_variants: int = 256,
        batch_size: int = 32,
        empty_caption_probability: float = 0.08,
        num_workers: int = 0,
    ):
        super().__init__()
        self.pool_size = pool_size
        self.seed = seed
        self.num_variants = num_variants
        self.batch_size = batch_size
        self.empty_caption_probability = empty_caption_probability
        self.num_workers = num_workers
        self._dataset: _PoolDataset | None = None

    def setup(self, stage: str) -> None:
        if self._dataset is not None:
            return
        scenes = broad_scenes(self.pool_size, self.seed, self.num_variants)
        images = torch.empty((len(scenes), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
        masks = torch.empty((len(scenes), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
        for i, scene in enumerate(tqdm(scenes, desc="rendering the broad world", unit="img")):
            image, mask = render_with_mask(scene)
            images[i] = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
            masks[i, 0] = torch.from_numpy((mask * 255).round().astype(np.uint8))
        self._dataset = _PoolDataset(scenes, images, masks, self.empty_caption_probability)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self._dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
