"""CUB-200-2011 birds."""

from __future__ import annotations

from typing import ClassVar

from bob.data.datasets.base import DatasetReader, Split
from bob.data.datasets.index_files import DAMAGED, check_labels, read_id_table, to_int
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord


class CUB200(DatasetReader):
    """CUB-200-2011, 200 bird species, with the official train/test split.

    Raw class names are the dataset's (``001.Black_footed_Albatross``); prompt names drop the
    numbering and underscores (``Black footed Albatross``).

    Args:
        root: the folder holding ``CUB_200_2011/``, or that folder itself.
    """

    name: ClassVar[str] = "cub"
    descriptor: ClassVar[str] = "bird"
    download_hint: ClassVar[str] = (
        "Download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
        "(data.caltech.edu/records/65de6-vp158) and extract it."
    )
    archive_folder: ClassVar[str] = "CUB_200_2011"
    required_paths: ClassVar[tuple[str, ...]] = (
        "images.txt",
        "image_class_labels.txt",
        "train_test_split.txt",
        "classes.txt",
        "images",
    )
    default_val_per_class: ClassVar[int] = 10  # the paper: 2000 validation images for 200 classes
    # Diff-Mix's CUB-LT groups (head of about 30 images): many > 20, few < 5.
    longtail_groups: ClassVar[tuple[int, int]] = (20, 5)

    def _read_class_names(self) -> list[str]:
        path = self.data_dir / "classes.txt"
        table = read_id_table(path)
        ids = sorted(to_int(key, path) for key in table)
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetLayoutError(f"{path}: class ids are not 1..{len(ids)}; {DAMAGED}")
        return [table[str(i)] for i in ids]

    def _read_records(self, split: Split) -> list[ImageRecord]:
        images = read_id_table(self.data_dir / "images.txt")
        labels_path = self.data_dir / "image_class_labels.txt"
        split_path = self.data_dir / "train_test_split.txt"
        labels, is_train = read_id_table(labels_path), read_id_table(split_path)
        for path, table in ((labels_path, labels), (split_path, is_train)):
            unlisted = sorted(set(images) - set(table), key=lambda key: to_int(key, path))
            if unlisted:
                raise DatasetLayoutError(f"{path} has no entry for image id(s) {unlisted[:5]}; {DAMAGED}")
        wanted = "1" if split == "train" else "0"
        chosen = [image_id for image_id in images if is_train[image_id] == wanted]
        label_list = [to_int(labels[image_id], labels_path) - 1 for image_id in chosen]
        check_labels(label_list, len(self.class_names), labels_path)
        return [self._make_record(f"images/{images[i]}", label) for i, label in zip(chosen, label_list, strict=True)]
