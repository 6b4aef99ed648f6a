"""Stanford Cars, in the layout torchvision.datasets.StanfordCars reads."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from bob.data.datasets.base import DatasetReader, Split
from bob.data.datasets.index_files import as_list, check_labels, load_mat, to_int
from bob.data.records import ImageRecord


class StanfordCars(DatasetReader):
    """Stanford Cars, 196 make/model/year classes, with the official train/test split.

    Class names come from ``devkit/cars_meta.mat`` ("AM General Hummer SUV 2000",
    "Ram C/V Cargo Van Minivan 2012") and are used in prompts as they are.

    Args:
        root: the folder holding ``stanford_cars/``, or that folder itself.
    """

    name: ClassVar[str] = "cars"
    descriptor: ClassVar[str] = "car"
    download_hint: ClassVar[str] = (
        "The original site (https://ai.stanford.edu/~jkrause/cars/car_dataset.html) is offline; get "
        "cars_train.tgz, cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat from a mirror "
        "(e.g. the Kaggle 'stanford-cars-dataset') and arrange them as torchvision.datasets.StanfordCars expects."
    )
    archive_folder: ClassVar[str] = "stanford_cars"
    required_paths: ClassVar[tuple[str, ...]] = (
        "devkit/cars_meta.mat",
        "devkit/cars_train_annos.mat",
        "cars_test_annos_withlabels.mat",
        "cars_train",
        "cars_test",
    )
    default_val_per_class: ClassVar[int] = 10  # the paper: 1960 validation images for 196 classes
    split_files: ClassVar[dict[str, tuple[str, str]]] = {
        "train": ("devkit/cars_train_annos.mat", "cars_train"),
        "test": ("cars_test_annos_withlabels.mat", "cars_test"),
    }

    def _read_class_names(self) -> list[str]:
        names = load_mat(self.data_dir / "devkit/cars_meta.mat", "class_names")["class_names"]
        return [str(name) for name in as_list(names)]

    @property
    def folder_names(self) -> list[str]:
        # Diff-II lower-cases the car names too: "am_general_hummer_suv_2000".
        return [name.lower() for name in super().folder_names]

    def _read_records(self, split: Split) -> list[ImageRecord]:
        annotations_file, folder = self.split_files[split]
        path: Path = self.data_dir / annotations_file
        annotations = np.atleast_1d(load_mat(path, "annotations")["annotations"])
        labels = [to_int(a["class"], path) - 1 for a in annotations]
        check_labels(labels, len(self.class_names), path)
        return [self._make_record(f"{folder}/{a['fname']}", label) for a, label in zip(annotations, labels, strict=True)]
