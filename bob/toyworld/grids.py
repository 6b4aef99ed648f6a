"""Sample grids for the toy-world report: one row per class, its name on the left."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from bob.atomic import atomic_write

_LABEL_WIDTH = 64


def class_grid(rows: Sequence[tuple[str, Sequence[Path]]], tile: int = 64, columns: int = 8) -> Image.Image:
    """A grid of ``columns`` images per row, each row headed by its class name."""
    grid = Image.new("RGB", (_LABEL_WIDTH + columns * tile, max(1, len(rows)) * tile), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, paths) in enumerate(rows):
        draw.text((4, r * tile + tile // 2 - 6), name, fill=(0, 0, 0))
        for c, path in enumerate(list(paths)[:columns]):
            with Image.open(path) as image:
                grid.paste(image.convert("RGB").resize((tile, tile), Image.NEAREST), (_LABEL_WIDTH + c * tile, r * tile))
    return grid


def side_by_side(panels: Sequence[tuple[str, Image.Image]], gap: int = 8) -> Image.Image:
    """Grids next to each other, each titled, e.g. real | DataDream | BOB for the same classes."""
    height = max(p.height for _, p in panels) + 16
    width = sum(p.width for _, p in panels) + gap * (len(panels) - 1)
    figure = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(figure)
    x = 0
    for title, panel in panels:
        draw.text((x + _LABEL_WIDTH, 2), title, fill=(0, 0, 0))
        figure.paste(panel, (x, 16))
        x += panel.width + gap
    return figure


def save_grid(image: Image.Image, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
