"""Oxford Flowers-102."""

from __future__ import annotations

from typing import ClassVar

from bob.data.datasets.base import DatasetReader, Split
from bob.data.datasets.index_files import as_list, check_labels, load_mat, to_int
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord


class Flowers102(DatasetReader):
    """Oxford Flowers-102: ``train`` is the official train + val sets (20 images per class),
    ``test`` the official test set.

    The label files carry numbers only; class names are torchvision's list
    (``torchvision.datasets.Flowers102.classes``), already prompt-friendly ("pink primrose").

    Args:
        root: the folder holding ``flowers-102/``, or that folder itself.
    """

    name: ClassVar[str] = "flowers"
    descriptor: ClassVar[str] = "flower"
    download_hint: ClassVar[str] = (
        "Download 102flowers.tgz, imagelabels.mat and setid.mat from "
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ into a folder named flowers-102 and "
        "extract the archive there (it makes jpg/)."
    )
    archive_folder: ClassVar[str] = "flowers-102"
    required_paths: ClassVar[tuple[str, ...]] = ("jpg", "imagelabels.mat", "setid.mat")
    # Not in the paper (Flowers is long-tail only there). 5 leaves 15 of the 20 train images per
    # class for shots, so 10-shot splits fit, and keeps the long-tail head's leftovers usable.
    default_val_per_class: ClassVar[int] = 5
    # Diff-Mix's Flowers-LT groups (many > 30, few < 10 on a head of about 40 images), scaled
    # to the official 20-image head.
    longtail_groups: ClassVar[tuple[int, int]] = (15, 5)
    split_keys: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("trnid", "valid"), "test": ("tstid",)}

    def _read_class_names(self) -> list[str]:
        from torchvision.datasets import Flowers102 as TorchvisionFlowers

        return list(TorchvisionFlowers.classes)

    def _read_records(self, split: Split) -> list[ImageRecord]:
        labels_path, setid_path = self.data_dir / "imagelabels.mat", self.data_dir / "setid.mat"
        labels = [to_int(v, labels_path) - 1 for v in as_list(load_mat(labels_path, "labels")["labels"])]
        check_labels(labels, len(self.class_names), labels_path)
        sets = load_mat(setid_path, *self.split_keys[split])
        image_ids = [to_int(i, setid_path) for key in self.split_keys[split] for i in as_list(sets[key])]
        unlabelled = [i for i in image_ids if not 1 <= i <= len(labels)]
        if unlabelled:
            raise DatasetLayoutError(
                f"{setid_path} names image ids {unlabelled[:5]} that {labels_path} has no label for "
                f"(it labels 1..{len(labels)}); re-download both files"
            )
        return [self._make_record(f"jpg/image_{i:05d}.jpg", labels[i - 1]) for i in image_ids]
