"""FGVC-Aircraft 2013b at the variant level."""

from __future__ import annotations

from typing import ClassVar

from bob.data.datasets.base import DatasetReader, Split
from bob.data.datasets.index_files import DAMAGED, read_rows
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord


class FGVCAircraft(DatasetReader):
    """FGVC-Aircraft, 100 variants: ``train`` is the official trainval split, ``test`` the test split.

    Variant names are kept exactly as the dataset writes them ("F/A-18", "F-16A/B", "Cessna 172");
    prompts use them unchanged.

    Args:
        root: the folder holding ``fgvc-aircraft-2013b/``, or that folder itself.
    """

    name: ClassVar[str] = "aircraft"
    descriptor: ClassVar[str] = "aircraft"
    download_hint: ClassVar[str] = (
        "Download fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ "
        "and extract it."
    )
    archive_folder: ClassVar[str] = "fgvc-aircraft-2013b"
    required_paths: ClassVar[tuple[str, ...]] = (
        "data/variants.txt",
        "data/images_variant_trainval.txt",
        "data/images_variant_test.txt",
        "data/images",
    )
    default_val_per_class: ClassVar[int] = 16  # the paper: 1600 validation images for 100 classes
    split_files: ClassVar[dict[str, str]] = {
        "train": "data/images_variant_trainval.txt",
        "test": "data/images_variant_test.txt",
    }

    def _read_class_names(self) -> list[str]:
        text = (self.data_dir / "data/variants.txt").read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _read_records(self, split: Split) -> list[ImageRecord]:
        path = self.data_dir / self.split_files[split]
        label_of = {name: label for label, name in enumerate(self.class_names)}
        rows = read_rows(path, 2)
        unknown = sorted({variant for _, variant in rows if variant not in label_of})
        if unknown:
            raise DatasetLayoutError(f"{path} names variants missing from data/variants.txt: {unknown[:5]}; {DAMAGED}")
        return [self._make_record(f"data/images/{image_id}.jpg", label_of[variant]) for image_id, variant in rows]
