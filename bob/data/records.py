"""The value type every stage passes around for one real image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image of a dataset.

    Args:
        sample_id: the image path relative to the dataset root, POSIX style; unique within a
            dataset and stable across machines, so split files and caption banks key on it.
        path: absolute path of the image file.
        label: index of the class in the dataset's class list.
        class_name: the dataset's raw class name (may contain characters such as ``/``).
    """

    sample_id: str
    path: Path
    label: int
    class_name: str
