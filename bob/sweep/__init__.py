"""Hyper-parameter grids over the CLI: short runs per grid point, a results table, then the final run."""

from bob.sweep.grid import expand_grid, load_grid, point_overrides
from bob.sweep.runner import Sweep

__all__ = ["Sweep", "expand_grid", "load_grid", "point_overrides"]
