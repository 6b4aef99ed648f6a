"""A torch Dataset over `ImageRecord`s that yields the project's dict samples."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from bob.data.images import load_rgb
from bob.data.records import ImageRecord

#: PIL -> uint8 tensor before user transforms (RandAugment and friends want uint8),
#: float in [0, 1] after them; normalisation belongs to the model.
TO_UINT8 = v2.ToImage()
TO_FLOAT = v2.ToDtype(torch.float32, scale=True)


class RecordDataset(Dataset):
    """Images of a list of records, each sample a dict.

    Keys: ``image`` (float CHW in [0, 1]), ``label``, ``sample_id``, ``is_synthetic`` (the
    ``is_synthetic`` argument: False for real images), plus the record's entry in ``extra_fields``
    (sample id -> fields, e.g. caption attributes).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: Callable | None = None,
        extra_fields: Mapping[str, Mapping[str, Any]] | None = None,
        is_synthetic: bool = False,
    ):
        self.records = records
        self.transform = transform
        self.extra_fields = extra_fields or {}
        self.is_synthetic = is_synthetic

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = TO_UINT8(load_rgb(record.path))
        if self.transform is not None:
            image = self.transform(image)
        sample = {
            "image": TO_FLOAT(image),
            "label": record.label,
            "sample_id": record.sample_id,
            "is_synthetic": self.is_synthetic,
        }
        sample.update(self.extra_fields.get(record.sample_id, {}))
        return sample
