"""Oxford-IIIT Pets, 37 cat and dog breeds."""

from __future__ import annotations

from typing import ClassVar

from bob.data.datasets.base import DatasetReader, Split
from bob.data.datasets.index_files import DAMAGED, read_rows, to_int
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord


class OxfordPets(DatasetReader):
    """Oxford-IIIT Pets, 37 breeds: ``train`` is the official trainval split, ``test`` the test split.

    Class names are read off the image names as torchvision does (``american_bulldog_12`` ->
    ``american_bulldog``, ordered by class id); prompt names are torchvision's title-cased
    form ("American Bulldog").

    Args:
        root: the folder holding ``oxford-iiit-pet/``, or that folder itself.
    """

    name: ClassVar[str] = "pets"
    descriptor: ClassVar[str] = "pet"
    download_hint: ClassVar[str] = (
        "Download images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ "
        "and extract both into a folder named oxford-iiit-pet."
    )
    archive_folder: ClassVar[str] = "oxford-iiit-pet"
    required_paths: ClassVar[tuple[str, ...]] = ("images", "annotations/trainval.txt", "annotations/test.txt")
    default_val_per_class: ClassVar[int] = 16  # the paper: 592 validation images for 37 classes
    split_files: ClassVar[dict[str, str]] = {"train": "annotations/trainval.txt", "test": "annotations/test.txt"}

    def _rows(self, split: Split) -> list[tuple[str, int]]:
        path = self.data_dir / self.split_files[split]
        return [(image_id, to_int(label, path) - 1) for image_id, label, _, _ in read_rows(path, 4)]

    def _read_class_names(self) -> list[str]:
        names: dict[int, set[str]] = {}
        for split in ("train", "test"):
            for image_id, label in self._rows(split):
                names.setdefault(label, set()).add(image_id.rsplit("_", 1)[0])
        where = self.data_dir / "annotations"
        if sorted(names) != list(range(len(names))):
            raise DatasetLayoutError(f"class ids in {where}/*.txt are not 1..{len(names)}; {DAMAGED}")
        mixed = {label + 1: sorted(found) for label, found in names.items() if len(found) > 1}
        if mixed:
            raise DatasetLayoutError(f"{where}: one class id names several breeds: {mixed}; {DAMAGED}")
        return [next(iter(names[label])) for label in range(len(names))]

    @property
    def prompt_names(self) -> list[str]:
        return [" ".join(part.title() for part in name.split("_")) for name in self.class_names]

    def _read_records(self, split: Split) -> list[ImageRecord]:
        return [self._make_record(f"images/{image_id}.jpg", label) for image_id, label in self._rows(split)]
