"""Image loading that names the file when it fails."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bob.data.errors import CorruptImageError


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB, fully decoded, or raise `CorruptImageError` naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise CorruptImageError(f"image file {path} does not exist") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CorruptImageError(
            f"cannot decode image {path} ({error}); replace or remove the file and rerun"
        ) from error


def verify_images(paths: list[Path]) -> None:
    """Decode every image once, so a corrupt file fails before training starts."""
    for path in paths:
        load_rgb(path)
