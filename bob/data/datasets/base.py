"""The reader interface shared by every supported dataset layout."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from bob.data.class_names import folder_name, prompt_name
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord

Split = Literal["train", "test"]


class DatasetReader(ABC):
    """Reads one dataset's official on-disk layout into `ImageRecord` lists.

    Subclasses hold only constants and the parsing of their layout's index files. ``train``
    is the official pool few-shot images and validation images are drawn from; ``test`` is
    the official test split. Sample ids are paths relative to `data_dir`, so a split file
    stays valid whether ``root`` names the archive's folder or the folder holding it.

    Args:
        root: folder the dataset was downloaded or extracted into.
    """

    #: short name used in split files and run names, e.g. ``aircraft``.
    name: ClassVar[str]
    #: the super-category the prompts use instead of a class name, e.g. ``aircraft``.
    descriptor: ClassVar[str]
    #: where a user gets the data, shown when the layout is wrong.
    download_hint: ClassVar[str]
    #: files or folders (relative to `data_dir`) that must exist before anything is parsed.
    required_paths: ClassVar[tuple[str, ...]]
    #: the folder the official archive extracts to; ``root`` may be that folder or its parent.
    archive_folder: ClassVar[str] = ""
    #: extra real validation images per class drawn from the train split (the paper's sizes).
    default_val_per_class: ClassVar[int] = 10
    #: long-tail class groups: ``many`` above the first count, ``few`` below the second.
    longtail_groups: ClassVar[tuple[int, int]] = (100, 20)

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @property
    def data_dir(self) -> Path:
        """The folder holding `required_paths`: ``root/archive_folder`` if present, else ``root``."""
        if self.archive_folder and (self.root / self.archive_folder).is_dir():
            return self.root / self.archive_folder
        return self.root

    def check_layout(self) -> None:
        """Fail early, listing what is missing and where the data comes from."""
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{type(self).__name__}: dataset root {self.root} does not exist. "
                f"{self.download_hint} Then pass its folder as the dataset's `root`."
            )
        missing = [p for p in self.required_paths if not (self.data_dir / p).exists()]
        if missing:
            where = f"{self.root / self.archive_folder} (or directly under {self.root})" if self.archive_folder else str(self.root)
            raise DatasetLayoutError(
                f"{type(self).__name__}: {self.root} is not in the expected layout. Expected under "
                f"{where}: {', '.join(self.required_paths)}; missing: {', '.join(missing)}. {self.download_hint}"
            )

    @cached_property
    def class_names(self) -> list[str]:
        """Raw class names in label order."""
        self.check_layout()
        names = self._read_class_names()
        repeated = [name for name, count in Counter(names).items() if count > 1]
        if repeated:
            raise DatasetLayoutError(f"{type(self).__name__}: class names repeat in {self.data_dir}: {repeated[:5]}")
        return names

    @property
    def prompt_names(self) -> list[str]:
        """Class names as they appear in prompts (see `bob.data.class_names.prompt_name`)."""
        return [prompt_name(c) for c in self.class_names]

    @property
    def folder_names(self) -> list[str]:
        """Class names as the Diff-II split folders (and so the authors' prompts) write them."""
        return [folder_name(c) for c in self.class_names]

    def records(self, split: Split) -> list[ImageRecord]:
        """All images of the official ``train`` or ``test`` split, sorted by sample id."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        cache = self.__dict__.setdefault("_records_cache", {})
        if split not in cache:
            self.check_layout()
            found = self._read_records(split)
            repeated = [s for s, count in Counter(r.sample_id for r in found).items() if count > 1]
            if repeated:
                raise DatasetLayoutError(
                    f"{type(self).__name__}: the {split} index under {self.data_dir} lists "
                    f"{len(repeated)} image(s) twice, e.g. {repeated[:3]}. Re-extract the dataset."
                )
            missing = [r.path for r in found if not r.path.is_file()]
            if missing:
                shown = ", ".join(str(p) for p in missing[:5])
                raise DatasetLayoutError(
                    f"{type(self).__name__}: {len(missing)} image(s) listed in the {split} index "
                    f"under {self.data_dir} are missing, e.g. {shown}. Re-extract the dataset."
                )
            cache[split] = sorted(found, key=lambda r: r.sample_id)
            self.__dict__.setdefault("_release_order", {})[split] = found
        return cache[split]

    def release_order(self, split: Split) -> list[ImageRecord]:
        """The images of ``split`` in the dataset's own index order (CUB: ``images.txt``), which is
        how the authors' loaders enumerate them and so what their index files count in."""
        self.records(split)
        return self.__dict__["_release_order"][split]

    def record(self, sample_id: str, label: int) -> ImageRecord:
        """The record of an image inside `data_dir`, used when a split file is read back."""
        return ImageRecord(sample_id, self.data_dir / sample_id, label, self.class_names[label])

    @abstractmethod
    def _read_class_names(self) -> list[str]:
        """Parse the layout's class list."""

    @abstractmethod
    def _read_records(self, split: Split) -> list[ImageRecord]:
        """Parse the layout's index of ``split``."""

    def _make_record(self, relative: str, label: int) -> ImageRecord:
        return self.record(relative, label)
