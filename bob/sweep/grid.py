"""Grid files: CLI option -> list of values, expanded into the points of a sweep."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from bob.data.errors import BobInputError
from bob.shipped import shipped_config


def load_grid(path: str | Path) -> dict[str, list[Any]]:
    """Read a grid file: a YAML mapping from a CLI option (``model.init_args.real_weight``) to its values.

    ``configs/classifier/grids/...`` is found inside the package when the working directory has no ``configs/``.
    """
    path = Path(shipped_config(str(path)))
    if not path.is_file():
        raise BobInputError(f"grid file {path} does not exist (see configs/classifier/grids/ for examples)")
    grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(grid, dict) or not grid:
        raise BobInputError(f"grid file {path} must map CLI options to lists of values, e.g. 'model.init_args.real_weight: [0.5, 0.8]'")
    bad = [key for key, values in grid.items() if not isinstance(values, list) or not values]
    if bad:
        raise BobInputError(f"grid file {path}: {bad} must each be a non-empty list of values")
    return {str(key).removeprefix("--"): values for key, values in grid.items()}


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest (the order of the file)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[key] for key in keys))]


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def point_overrides(point: dict[str, Any]) -> list[str]:
    """``--key=value`` CLI arguments of a grid point."""
    return [f"--{key}={format_value(value)}" for key, value in point.items()]


def point_label(point: dict[str, Any]) -> str:
    """A short human label: the last part of each key, e.g. ``lr=1e-05 real_weight=0.5``."""
    return " ".join(f"{key.rsplit('.', 1)[-1]}={format_value(value)}" for key, value in point.items())
