"""The classifier's data: real shots repeated to the paper's ratio, pooled with a synthetic image set."""

from __future__ import annotations

import logging
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, DataLoader
from torchvision.transforms import v2

from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError
from bob.data.records import ImageRecord
from bob.data.synthetic_set import load_synthetic_records
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.on_the_fly import OnTheFlyGeneration, is_generation_config
from bob.datamodules.real_images import RecordDataset

log = logging.getLogger(__name__)

#: real + synthetic images per class the paper balances the pools to (100 synthetic per class).
IMAGES_PER_CLASS = 100


def paper_train_transform(image_size: int = 224) -> v2.Compose:
    """PAPER.md's training augmentation, on uint8 images (the shipped configs spell it out in YAML).

    The crop comes first so the photometric operations work on ``image_size`` pixels, not on
    the full-resolution photo.
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.25, 1.0), interpolation="bicubic", antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandAugment(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=23, sigma=(0.1, 2.0))], p=0.2),
            v2.RandomSolarize(threshold=128.0, p=0.2),
        ]
    )


class RealSyntheticDataModule(FewShotDataModule):
    """Real training shots plus synthetic images, each sample flagged with ``is_synthetic``.

    Each epoch holds every real shot ``real_repeats`` times (independently augmented) and every
    synthetic image once; at 5 shots and 100 synthetic images per class the default repeat of
    ``100 // shots`` = 20 makes the two pools the same size, as in the paper. The classifier
    weighs the two parts of each batch with λ. Validation and test use real images only.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        synthetic: folder of a synthetic image set (stage 3 output, ``python main.py predict -c
            configs/<dataset>/generate.yaml``); ``{dataset}``, ``{sampling}`` (``5shot``,
            ``lt100``), ``{shots}``, ``{imbalance_factor}`` and ``{seed}`` are filled in as in
            ``split_file``. None trains on the real images alone. Or a generation config
            (``configs/<dataset>/generate.yaml``): the images of its set that are missing are
            generated before training starts, on this run's devices (each rank its share).
        real_repeats: how many times each real shot appears per epoch; None uses
            ``100 // shots`` (1 for long-tail splits, which have no fixed shot count).
        refresh_fraction: with a generation config, the share of the synthetic images
            regenerated in place (fresh seeds and contexts) every ``refresh_every_n_epochs``.
        refresh_every_n_epochs: epochs between refreshes; 0 never refreshes.
        **kwargs: the arguments of `FewShotDataModule` (shots, seed, split_file, batch_size...);
            ``train_transform`` defaults to the paper's augmentation here.
    """

    def __init__(
        self,
        dataset: DatasetReader,
        synthetic: str | None = None,
        real_repeats: int | None = None,
        refresh_fraction: float = 0.0,
        refresh_every_n_epochs: int = 0,
        **kwargs: Any,
    ):
        super().__init__(dataset, **kwargs)
        if real_repeats is not None and real_repeats < 1:
            raise BobInputError(f"real_repeats must be at least 1, got {real_repeats}")
        if kwargs.get("train_transform") is None:
            self.train_transform = paper_train_transform(self.image_size)
        self.synthetic = synthetic
        self.real_repeats_setting = real_repeats
        self.refresh = (refresh_fraction, refresh_every_n_epochs)
        self._synthetic_records: list[ImageRecord] | None = None

    @cached_property
    def on_the_fly(self) -> OnTheFlyGeneration | None:
        """The generation behind ``synthetic`` when it names a generation config."""
        if self.synthetic is None or not is_generation_config(self.synthetic):
            return None
        return OnTheFlyGeneration(self.synthetic, *self.refresh)

    @property
    def synthetic_folder(self) -> Path | None:
        if self.synthetic is None:
            return None
        if self.on_the_fly is not None:
            return self.on_the_fly.folder
        return self.format_path(self.synthetic, "synthetic")

    @property
    def real_repeats(self) -> int:
        if self.real_repeats_setting is not None:
            return self.real_repeats_setting
        shots = self.split.shots
        return max(1, IMAGES_PER_CLASS // shots) if shots else 1

    def synthetic_records(self) -> list[ImageRecord]:
        """The synthetic training images, read (and checked against the classes) on first use."""
        if self.synthetic_folder is None:
            return []
        if self._synthetic_records is None:
            records = load_synthetic_records(self.synthetic_folder, self.class_names)
            if not records:
                raise BobInputError(f"synthetic set {self.synthetic_folder} lists no images")
            self._synthetic_records = records
        return self._synthetic_records

    def extra_fields(self, record: ImageRecord) -> dict[str, Any]:
        # Real and synthetic samples are collated together, so they must carry the same keys;
        # the classifier reads no captions.
        return {}

    def prepare_data(self) -> None:
        super().prepare_data()
        if self.on_the_fly is None:  # otherwise the set is made in `setup`, by every rank
            self.synthetic_records()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.on_the_fly is not None:
            if self.trainer is None:
                raise BobInputError("a generation config as `synthetic` needs a trainer to generate with")
            self.on_the_fly.setup(self.trainer, self.split)
        synthetic = self.synthetic_records()
        per_class = Counter(r.label for r in synthetic)
        if synthetic:
            without = [name for label, name in enumerate(self.class_names) if not per_class[label]]
            if without and self.split.shots is not None:
                log.warning("%d class(es) have no synthetic images, e.g. %s", len(without), without[:3])
        real = len(self.split.train)
        log.info(
            "training pool: %d real shots x %d repeats = %d real, %d synthetic (%s)",
            real, self.real_repeats, real * self.real_repeats, len(synthetic),
            self.synthetic_folder or "no synthetic set",
        )
        if self.trainer is not None and self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams(self.pool_summary())

    def pool_summary(self) -> dict[str, Any]:
        """What the training pool is made of, for the logger."""
        return {
            "data/split_file": str(self.split_file),
            "data/real_shots": len(self.split.train),
            "data/real_repeats": self.real_repeats,
            "data/synthetic_folder": str(self.synthetic_folder) if self.synthetic_folder else None,
            "data/synthetic_images": len(self.synthetic_records()),
        }

    def train_dataset(self) -> ConcatDataset:
        real = RecordDataset(self.split.train * self.real_repeats, self.train_transform)
        parts = [real]
        if self.synthetic_records():
            parts.append(RecordDataset(self.synthetic_records(), self.train_transform, is_synthetic=True))
        return ConcatDataset(parts)

    def train_dataloader(self) -> DataLoader:
        if self.on_the_fly is not None:
            self.on_the_fly.maybe_refresh(self.trainer)
        dataset = self.train_dataset()
        # Drop the last partial batch: a batch of one breaks batch-norm and part-wise mixing.
        return self.make_dataloader(dataset, shuffle=True, drop_last=len(dataset) > self.batch_size)
