"""An opt-in cache of decoded images shrunk to a short side, stored as uint8 arrays on disk.

A loader decodes every full-size photo each time it reads it, and the classifier's augmentation
starts on the whole photo; with the cache each image is decoded and shrunk once, and every later
read is a ``.npy`` load of a few hundred kB (docs/benchmarks.md, "The classifier's loader with the
resized image cache"). Not exact: the transforms then work on fewer source
pixels (docs/reproduce.md, "Resized image cache").

An entry is ``<folder>/resized_<side>/<2 hex>/<sha256>.npy``, a CHW uint8 array. Its name hashes
the source's resolved path, byte size and modification time (and the sizes below), so a rewritten
source gets a new entry; the old one stays until the folder is deleted, which is always safe.
Entries are written atomically (`bob.atomic.atomic_write`): processes that build the same entry at
once (DDP ranks, dataloader workers) each write a whole file and the last rename wins. An entry that
cannot be read (truncated, foreign bytes) is rebuilt from its source.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from bob.atomic import atomic_write
from bob.data.errors import CorruptImageError
from bob.data.images import load_uint8

log = logging.getLogger(__name__)

#: How the cache shrinks images: the call and settings of bob's eval resize (bicubic, antialiased).
INTERPOLATION = v2.InterpolationMode.BICUBIC
#: Version of the entry format, part of every key.
FORMAT = 1


def cached_size(height: int, width: int, short_side: int, match_size: int | None = None) -> tuple[int, int]:
    """(height, width) of an image's cache entry: its short side ``short_side``, its shape kept.

    An image whose short side is ``short_side`` or less is kept as it is. The long side is
    torchvision's, ``int(short_side * long / short)``, unless ``match_size`` is given: then it
    is the whole number nearest to ``short_side * long / short`` for which resizing the entry's
    short side to ``match_size`` (the eval transform's ``Resize``) gives the same size as
    resizing the original. Otherwise the two sizes can differ by a pixel, and the centre crop
    after them then shifts by one.
    """
    short, long = min(height, width), max(height, width)
    if short <= short_side:
        return height, width
    exact = short_side * long / short
    new_long = int(exact)
    if match_size is not None and match_size < short_side:
        wanted = int(match_size * long / short)
        candidates = sorted(range(max(short_side, math.floor(exact) - 2), math.ceil(exact) + 3), key=lambda c: abs(c - exact))
        new_long = next((c for c in candidates if int(match_size * c / short_side) == wanted), new_long)
    return (short_side, new_long) if height <= width else (new_long, short_side)


def shrink(image: torch.Tensor, short_side: int, match_size: int | None = None) -> torch.Tensor:
    """A uint8 CHW image resized to its `cached_size` (bicubic, antialiased); unchanged when small enough."""
    height, width = image.shape[-2:]
    size = cached_size(height, width, short_side, match_size)
    if size == (height, width):
        return image
    return F.resize(image.as_subclass(torch.Tensor), list(size), interpolation=INTERPOLATION, antialias=True)


class ResizedImageCache:
    """Decoded images at a short side of ``short_side`` pixels, under ``folder/resized_<short_side>/``.

    Calling it with an image path gives the cached image as a uint8 CHW ``tv_tensors.Image`` (what
    ``ToImage`` gives for the decoded file), building the entry first when there is none. Holds
    plain values only, so dataloader workers get cheap pickled copies.

    Args:
        folder: where the ``resized_<side>`` folders go (shared by datasets and runs: entries
            are keyed by absolute path).
        short_side: the entries' short side in pixels.
        match_size: the eval transform's resize (`cached_size`); None keeps torchvision's rounding.
    """

    def __init__(self, folder: str | Path, short_side: int, match_size: int | None = None):
        if short_side < 1:
            raise ValueError(f"short_side must be a positive number of pixels, got {short_side}")
        self.root = Path(folder) / f"resized_{short_side}"
        self.short_side = short_side
        self.match_size = match_size

    def __repr__(self) -> str:
        return f"ResizedImageCache({str(self.root)!r}, short_side={self.short_side}, match_size={self.match_size})"

    def entry(self, source: str | Path) -> Path:
        """The entry file of ``source`` as it is now (its size and modification time are part of the name)."""
        path = Path(source).resolve()
        try:
            stat = path.stat()
        except FileNotFoundError as error:
            raise CorruptImageError(f"image file {source} does not exist") from error
        key = f"{FORMAT}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.short_side}\0{self.match_size}"
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def __call__(self, source: str | Path) -> tv_tensors.Image:
        entry = self.entry(source)
        image = self.read(entry)
        if image is None:
            image = self.build(source, entry)
        return tv_tensors.Image(image)

    def read(self, entry: Path) -> torch.Tensor | None:
        """The entry's image, or None when it is missing or cannot be used (it is then rebuilt)."""
        try:
            array = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:
            log.warning("image cache entry %s cannot be read (%s); decoding its source again", entry, error)
            return None
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] != 3 or not 0 < min(array.shape[1:]) <= self.short_side:
            log.warning("image cache entry %s holds a %s array of shape %s; decoding its source again", entry, array.dtype, array.shape)
            return None
        return torch.from_numpy(array)

    def build(self, source: str | Path, entry: Path | None = None) -> torch.Tensor:
        """Decode ``source``, shrink it and write its entry; the shrunk image."""
        entry = self.entry(source) if entry is None else entry
        image = shrink(load_uint8(source), self.short_side, self.match_size).contiguous()
        array = image.numpy()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as file:  # np.save(path) would append ".npy" to the temporary name
                np.save(file, array, allow_pickle=False)

        atomic_write(entry, write)
        return image

    def missing(self, sources: Sequence[str | Path]) -> list[Path]:
        """The sources (each once, in order) without an entry file; a missing source counts as missing."""
        unique = list(dict.fromkeys(Path(source) for source in sources))
        return [source for source in unique if not self._has_entry(source)]

    def _has_entry(self, source: Path) -> bool:
        try:
            return self.entry(source).is_file()
        except CorruptImageError:
            return False

    def fill(self, sources: Sequence[str | Path], description: str | None = None) -> list[tuple[Path, str]]:
        """Build every missing entry (a few threads: decoding and resizing release the GIL).

        Returns the sources that could not be decoded, with why (nothing is written for them).

        Args:
            sources: image files; repeats are built once.
            description: label of a progress bar (on stderr); None shows none.
        """
        todo = self.missing(sources)
        workers = min(8, os.cpu_count() or 1)

        def build(source: Path) -> str | None:
            try:
                self.build(source)
            except CorruptImageError as error:
                return str(error)
            return None

        broken = []
        with ThreadPoolExecutor(workers) as pool, tqdm(
            total=len(todo), desc=description, unit="img", disable=description is None or not todo, mininterval=1.0
        ) as bar:
            for source, problem in zip(todo, pool.map(build, todo), strict=True):
                if problem is not None:
                    broken.append((source, problem))
                bar.update()
        return broken
