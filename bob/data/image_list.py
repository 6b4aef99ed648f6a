"""Images to classify, named by a folder, a list file, one file, or a list of paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bob.data.datasets.folders import IMAGE_SUFFIXES
from bob.data.errors import BobInputError


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_list_file(path: Path) -> list[Path]:
    """One image path a line; relative paths are read from the list file's folder; blank lines
    and lines starting with ``#`` are skipped."""
    images = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            image = Path(line).expanduser()
            images.append(image if image.is_absolute() else path.parent / image)
    return images


def list_images(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The images ``source`` names, in a fixed order.

    ``source`` is a folder (every image file under it, recursively, sorted by path), a text file
    listing images (see `read_list_file`; listed order), one image file, or a sequence of image
    paths. Raises `BobInputError` when nothing is found or a listed file does not exist.
    """
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if is_image_file(p))
            if not images:
                raise BobInputError(f"no image files under {path} (suffixes {sorted(IMAGE_SUFFIXES)})")
            return images
        if not path.is_file():
            raise BobInputError(f"{path} does not exist; give a folder of images, a list file or an image")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images, where = [path], "given"
        else:
            images, where = read_list_file(path), f"listed in {path}"
    else:
        images, where = [Path(p).expanduser() for p in source], "given"
    if not images:
        raise BobInputError(f"no images {where}")
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise BobInputError(f"{len(missing)} image(s) {where} do not exist, e.g. {missing[:3]}")
    return images
