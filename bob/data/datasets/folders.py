"""A user's own data: one folder per class under ``train/`` and ``test/``."""

from __future__ import annotations

from typing import ClassVar

from bob.data.datasets.base import DatasetReader, Split
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ClassFolders(DatasetReader):
    """Generic layout ``root/{train,test}/<class name>/<image>``.

    Class names are the folder names of ``train/``, sorted; ``test/`` may hold the same classes
    or a subset. Files whose suffix is not an image format are reported, not ignored silently.

    Args:
        root: folder holding ``train/`` and ``test/``.
        descriptor: the super-category of the classes, used in prompts ("aircraft", "bird").
        name: short dataset name for split files and run names.
    """

    download_hint: ClassVar[str] = (
        "Arrange your images as <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg."
    )
    required_paths: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(self, root: str, descriptor: str = "object", name: str = "folders"):
        super().__init__(root)
        self.descriptor = descriptor
        self.name = name

    def _read_class_names(self) -> list[str]:
        names = sorted(p.name for p in (self.data_dir / "train").iterdir() if p.is_dir())
        if not names:
            raise DatasetLayoutError(f"no class folders under {self.data_dir / 'train'}")
        return names

    def _read_records(self, split: Split) -> list[ImageRecord]:
        index = {name: label for label, name in enumerate(self.class_names)}
        records, unknown, not_images = [], [], []
        for class_dir in sorted(p for p in (self.data_dir / split).iterdir() if p.is_dir()):
            if class_dir.name not in index:
                unknown.append(class_dir.name)
                continue
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    not_images.append(file)
                    continue
                relative = file.relative_to(self.data_dir).as_posix()
                records.append(self._make_record(relative, index[class_dir.name]))
        if unknown:
            raise DatasetLayoutError(
                f"{self.data_dir / split} has class folders not in {self.data_dir / 'train'}: {unknown[:5]}"
            )
        if not_images:
            raise DatasetLayoutError(
                f"{len(not_images)} file(s) under {self.data_dir / split} are not images "
                f"(allowed suffixes {sorted(IMAGE_SUFFIXES)}), e.g. {not_images[0]}; move them out"
            )
        return records
