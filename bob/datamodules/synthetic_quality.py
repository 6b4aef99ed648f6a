"""Real images of one split part and a synthetic set's images, flagged, for measuring the synthetic data."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import ConcatDataset, DataLoader, Dataset

from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError
from bob.data.records import ImageRecord
from bob.data.synthetic_set import load_synthetic_records, read_manifest_lines, read_summary
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.real_images import RecordDataset

log = logging.getLogger(__name__)

RealPart = Literal["train", "val", "test"]


class IndexedDataset(Dataset):
    """Adds ``index`` (position in the whole evaluation set) to every sample of a dataset."""

    def __init__(self, dataset: Dataset, offset: int):
        self.dataset = dataset
        self.offset = offset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": self.offset + index}


def _first_per_class(records: list[ImageRecord], limit: int | None) -> list[ImageRecord]:
    if limit is None:
        return records
    taken: dict[int, int] = {}
    kept = []
    for record in records:
        if taken.get(record.label, 0) < limit:
            taken[record.label] = taken.get(record.label, 0) + 1
            kept.append(record)
    return kept


class SyntheticQualityDataModule(FewShotDataModule):
    """Real images of one part of the split, then the images of a synthetic set, for `SyntheticQuality`.

    ``test`` serves every real image of ``real_part`` (indices ``0 .. R-1``) and then every
    synthetic image (indices ``R ..``), each sample flagged with ``is_synthetic`` and carrying
    its ``index``. When the real features are already cached the model turns ``include_real``
    off and only the synthetic images are read.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        synthetic: folder of a synthetic set (stage 3 output); ``{dataset}``, ``{sampling}``,
            ``{shots}``, ``{imbalance_factor}`` and ``{seed}`` are filled in as in the other stages.
        real_part: the real images the synthetic ones are compared with: ``val`` (extra real
            images of the official train split, ``val_per_class`` per class; the default),
            ``train`` (the few-shot images the text-to-image model was tuned on) or ``test``
            (the official test split; keep it for final numbers).
        max_images_per_class: use at most this many real and this many synthetic images per
            class (the first in split and manifest order); None uses all.
        **kwargs: the arguments of `FewShotDataModule` (shots, seed, split_file, image_size,
            batch_size, eval_transform...). ``image_size`` is the side images are cropped to
            before the feature extractor resizes them to its own input (299 suits Inception).
    """

    def __init__(
        self,
        dataset: DatasetReader,
        synthetic: str,
        real_part: RealPart = "val",
        max_images_per_class: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(dataset, **kwargs)
        if real_part not in ("train", "val", "test"):
            raise BobInputError(f"real_part must be 'train', 'val' or 'test', got {real_part!r}")
        if max_images_per_class is not None and max_images_per_class < 1:
            raise BobInputError(f"max_images_per_class must be at least 1, got {max_images_per_class}")
        self.synthetic = synthetic
        self.real_part = real_part
        self.max_images_per_class = max_images_per_class
        #: set to False by the model when the real features come from its cache.
        self.include_real = True
        self.real_records: list[ImageRecord] = []
        self.synthetic_records: list[ImageRecord] = []
        self.synthetic_entries: list[dict[str, Any]] = []

    @property
    def synthetic_folder(self) -> Path:
        return self.format_path(self.synthetic)

    def synthetic_summary(self) -> dict[str, Any]:
        return read_summary(self.synthetic_folder) or {}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        real = _first_per_class(getattr(self.split, self.real_part), self.max_images_per_class)
        synthetic = _first_per_class(load_synthetic_records(self.synthetic_folder, self.class_names), self.max_images_per_class)
        if not synthetic:
            raise BobInputError(f"synthetic set {self.synthetic_folder} lists no images")
        real_classes = {r.class_name for r in real}
        synthetic_classes = {r.class_name for r in synthetic}
        if not real_classes & synthetic_classes:
            raise BobInputError(
                f"the synthetic set {self.synthetic_folder} and the real {self.real_part!r} images share no class "
                f"(synthetic: {sorted(synthetic_classes)[:5]}; real: {sorted(real_classes)[:5]}). "
                "Check that the set was generated for this dataset and split, and that the real part "
                "has images (val_per_class > 0 for 'val')"
            )
        only_synthetic = sorted(synthetic_classes - real_classes)
        if only_synthetic:
            log.warning(
                "%d class(es) have synthetic images but no real %r images to compare with, e.g. %s",
                len(only_synthetic), self.real_part, only_synthetic[:3],
            )
        by_file = {entry["file"]: entry for entry in read_manifest_lines(self.synthetic_folder)}
        self.real_records, self.synthetic_records = real, synthetic
        self.synthetic_entries = [by_file[r.sample_id.removeprefix("synthetic/")] for r in synthetic]
        log.info(
            "quality data: %d real %r images, %d synthetic images from %s, %d shared classes",
            len(real), self.real_part, len(synthetic), self.synthetic_folder, len(real_classes & synthetic_classes),
        )

    def real_fingerprint(self) -> str:
        """A hash of what decides the real features: which images (and their sizes) and the transform."""
        payload = {
            "dataset": self.dataset.name,
            "part": self.real_part,
            "images": [[r.sample_id, r.class_name, r.path.stat().st_size] for r in self.real_records],
            "image_size": self.image_size,
            "transform": repr(self.eval_transform),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def extra_fields(self, records: list[ImageRecord]) -> dict[str, dict[str, Any]]:
        # Real and synthetic samples share batches, so they carry the same keys and no captions.
        return {}

    def test_dataloader(self) -> DataLoader:
        offset = len(self.real_records)
        parts: list[Dataset] = []
        if self.include_real:
            parts.append(IndexedDataset(RecordDataset(self.real_records, self.eval_transform), 0))
        parts.append(IndexedDataset(RecordDataset(self.synthetic_records, self.eval_transform, is_synthetic=True), offset))
        return self.make_dataloader(ConcatDataset(parts), shuffle=False)
