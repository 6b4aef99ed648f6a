"""The value type every stage passes around for one real image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image of a dataset.

    Args:
        sample_id: the image path relative to the dataset folder, POSIX style; unique within a
            dataset and stable across machines, so split files and caption banks key on it.
            Images outside the dataset (shots copied into an external split folder) use their
            path from that folder's parent, e.g. ``5shot/train/F_A-18/0.jpg``.
        path: absolute path of the image file.
        label: index of the class in the dataset's class list.
        class_name: the dataset's raw class name (may contain characters such as ``/``).
    """

    sample_id: str
    path: Path
    label: int
    class_name: str
