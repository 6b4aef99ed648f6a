"""The reader interface shared by every supported dataset layout."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from bob.data.class_names import prompt_name
from bob.data.errors import DatasetLayoutError
from bob.data.records import ImageRecord

Split = Literal["train", "test"]


class DatasetReader(ABC):
    """Reads one dataset's official on-disk layout into `ImageRecord` lists.

    Subclasses hold only constants and the parsing of their layout's index files. ``train``
    is the official pool few-shot images and validation images are drawn from; ``test`` is
    the official test split.

    Args:
        root: folder the dataset was downloaded or extracted into.
    """

    #: short name used in split files and run names, e.g. ``aircraft``.
    name: ClassVar[str]
    #: the super-category the prompts use instead of a class name, e.g. ``aircraft``.
    descriptor: ClassVar[str]
    #: where a user gets the data, shown when the layout is wrong.
    download_hint: ClassVar[str]
    #: files or folders (relative to ``root``) that must exist before anything is parsed.
    required_paths: ClassVar[tuple[str, ...]]
    #: extra real validation images per class drawn from the train split (PAPER.md's sizes).
    default_val_per_class: ClassVar[int] = 10

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def check_layout(self) -> None:
        """Fail early, listing what is missing and where the data comes from."""
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{type(self).__name__}: dataset root {self.root} does not exist. "
                f"{self.download_hint} Then pass its folder as the dataset's `root`."
            )
        missing = [p for p in self.required_paths if not (self.root / p).exists()]
        if missing:
            raise DatasetLayoutError(
                f"{type(self).__name__}: {self.root} is not in the expected layout; missing "
                f"{', '.join(str(self.root / p) for p in missing)}. {self.download_hint}"
            )

    @cached_property
    def class_names(self) -> list[str]:
        """Raw class names in label order."""
        self.check_layout()
        return self._read_class_names()

    @property
    def prompt_names(self) -> list[str]:
        """Class names as they appear in prompts (see `bob.data.class_names.prompt_name`)."""
        return [prompt_name(c) for c in self.class_names]

    def records(self, split: Split) -> list[ImageRecord]:
        """All images of the official ``train`` or ``test`` split, sorted by sample id."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        cache = self.__dict__.setdefault("_records_cache", {})
        if split not in cache:
            self.check_layout()
            found = self._read_records(split)
            missing = [r.path for r in found if not r.path.is_file()]
            if missing:
                shown = ", ".join(str(p) for p in missing[:5])
                raise DatasetLayoutError(
                    f"{type(self).__name__}: {len(missing)} image(s) listed in the {split} index "
                    f"under {self.root} are missing, e.g. {shown}. Re-extract the dataset."
                )
            cache[split] = sorted(found, key=lambda r: r.sample_id)
        return cache[split]

    def record(self, sample_id: str, label: int) -> ImageRecord:
        """The record for a sample id, used when a split file is read back."""
        return ImageRecord(sample_id, self.root / sample_id, label, self.class_names[label])

    @abstractmethod
    def _read_class_names(self) -> list[str]:
        """Parse the layout's class list."""

    @abstractmethod
    def _read_records(self, split: Split) -> list[ImageRecord]:
        """Parse the layout's index of ``split``."""

    def _make_record(self, relative: str, label: int) -> ImageRecord:
        return ImageRecord(relative, self.root / relative, label, self.class_names[label])
