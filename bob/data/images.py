"""Image loading that names the file when it fails, and checks that whole sets of images decode."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from bob.data.errors import CorruptImageError

#: Broken files an error message names before it says how many more there are.
NAMED_IN_ERRORS = 5


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


def load_uint8(path: str | Path) -> torch.Tensor:
    """`load_rgb` as a uint8 CHW image tensor (torchvision's ``to_image``), what every loader and transform takes."""
    return F.to_image(load_rgb(path))


def decode_problem(path: str | Path) -> str | None:
    """Why the image at ``path`` cannot be used (missing, unreadable, truncated), or None when it decodes."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        return "does not exist"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return str(error) or type(error).__name__
    return None


def find_broken_images(paths: Sequence[str | Path], description: str | None = None) -> list[tuple[Path, str]]:
    """Decode every image once (a few threads: PIL decodes outside the GIL); the ones that fail, with why.

    Args:
        paths: the image files.
        description: label of a progress bar (on stderr); None shows none.
    """
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(paths), desc=description, unit="img", disable=description is None, mininterval=1.0
    ) as bar:
        problems = []
        for problem in pool.map(decode_problem, paths):
            problems.append(problem)
            bar.update()
    return [(Path(path), problem) for path, problem in zip(paths, problems, strict=True) if problem is not None]


def describe_broken(broken: list[tuple[Path, str]]) -> str:
    """``2 image(s) cannot be decoded: a.jpg (truncated); b.jpg (does not exist)``, the first few named."""
    named = "; ".join(f"{path} ({problem})" for path, problem in broken[:NAMED_IN_ERRORS])
    more = f"; and {len(broken) - NAMED_IN_ERRORS} more" if len(broken) > NAMED_IN_ERRORS else ""
    return f"{len(broken)} image(s) cannot be decoded: {named}{more}"


def verify_images(paths: Sequence[str | Path], description: str | None = None) -> None:
    """Decode every image once, so a corrupt file fails before training starts, naming the broken files."""
    broken = find_broken_images(paths, description)
    if broken:
        raise CorruptImageError(
            f"{describe_broken(broken)}; replace or remove them and rerun "
            "(`python -m bob.check_data <the run's arguments>` lists every broken image)"
        )
