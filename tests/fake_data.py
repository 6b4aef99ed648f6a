"""Fake datasets in each supported on-disk layout, written by code (no committed binaries)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image


def write_image(path: Path, seed: int, size: int = 32) -> Path:
    """A small solid-colour PNG/JPEG with a stripe, distinct per seed."""
    rng = random.Random(seed)
    colour = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), colour)
    for x in range(size):
        image.putpixel((x, size // 2), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_class_folders(
    root: Path, classes: list[str], train_per_class: int = 12, test_per_class: int = 3, suffix: str = ".png"
) -> Path:
    """``root/{train,test}/<class>/<n>.png``."""
    seed = 0
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in classes:
            for i in range(count):
                seed += 1
                write_image(root / split / name / f"{name}_{i:03d}{suffix}", seed)
    return root


#: Reader class name -> function writing a fake of its layout into a folder (returns the root).
FAKE_LAYOUT_WRITERS = {
    "ClassFolders": lambda root: make_class_folders(root, ["alpha", "beta", "gamma"], train_per_class=30),
}
