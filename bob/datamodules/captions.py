"""The training shots served whole for captioning, with the already-captioned ones left out."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bob.data.datasets.base import DatasetReader
from bob.data.errors import CorruptImageError
from bob.data.images import load_rgb
from bob.data.records import ImageRecord
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.real_images import TO_FLOAT, TO_UINT8


class WholeImageDataset(Dataset):
    """Records as whole images (aspect ratio kept, longer side at most ``max_side``).

    A file that cannot be decoded gives a sample with ``image`` None and its reason in
    ``error``, so one bad file is reported instead of ending the run.
    """

    def __init__(self, records: list[ImageRecord], max_side: int):
        self.records = records
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        sample = {"label": record.label, "sample_id": record.sample_id, "is_synthetic": False}
        try:
            image = load_rgb(record.path)
        except CorruptImageError as error:
            return {**sample, "image": None, "error": str(error)}
        image.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
        return {**sample, "image": TO_FLOAT(TO_UINT8(image)), "error": None}


def collate_whole_images(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Images differ in size, so ``image`` (and ``sample_id``, ``error``) stay lists."""
    return {
        "image": [s["image"] for s in samples],
        "label": torch.tensor([s["label"] for s in samples]),
        "sample_id": [s["sample_id"] for s in samples],
        "is_synthetic": torch.tensor([s["is_synthetic"] for s in samples]),
        "error": [s["error"] for s in samples],
    }


class CaptionDataModule(FewShotDataModule):
    """The training shots of a few-shot split, for the caption stage's ``predict``.

    Unlike `FewShotDataModule` it serves each image whole (no crop: a background at the edge
    is still context), as a list of differently sized images, and it does not stop at a file
    that cannot be decoded: the captioner reports it and captions the rest. A prediction
    writer that finds earlier results calls `exclude_from_predict`, so a rerun captions only
    what is left, and reads `caption_targets` to know when the bank is complete.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        max_side: images larger than this (in pixels, longer side) are shrunk before the
            captioner's own processor sees them; smaller ones are left as they are.
        **kwargs: the arguments of `FewShotDataModule` (``shots``, ``seed``, ``split_file``,
            ``batch_size``, ``num_workers``...).
    """

    def __init__(self, dataset: DatasetReader, max_side: int = 1024, **kwargs: Any):
        # Decoding is checked per image while captioning, where a bad file is reported by name.
        super().__init__(dataset, verify_shots=False, **kwargs)
        self.max_side = max_side
        self._excluded: set[str] = set()

    @property
    def caption_targets(self) -> list[ImageRecord]:
        """Every image the caption bank must describe: the split's training shots."""
        return self.split.train

    def exclude_from_predict(self, sample_ids: Collection[str]) -> None:
        """Leave these images out of the predict dataloader (they are captioned already)."""
        self._excluded = set(sample_ids)

    def predict_dataloader(self) -> DataLoader:
        records = [r for r in self.caption_targets if r.sample_id not in self._excluded]
        return DataLoader(
            WholeImageDataset(records, self.max_side),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_whole_images,
            persistent_workers=False,
        )
