"""Parsing of the index files official dataset archives ship (text tables and MATLAB files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bob.data.errors import DatasetLayoutError

DAMAGED = "the file looks damaged; re-extract the dataset from the official archive"


def read_rows(path: Path, columns: int) -> list[list[str]]:
    """Whitespace-separated rows of ``columns`` fields; the last field keeps inner spaces.

    Blank lines and ``#`` comment lines are skipped; any other short line is an error that
    names the file and line, so no entry is dropped silently.
    """
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(maxsplit=columns - 1)
        if len(fields) != columns:
            raise DatasetLayoutError(f"{path}:{number}: expected {columns} fields, found {text!r}; {DAMAGED}")
        rows.append(fields)
    return rows


def read_id_table(path: Path) -> dict[str, str]:
    """A two-column table ``<id> <value>`` as a dict; a repeated id is an error."""
    table: dict[str, str] = {}
    for key, value in read_rows(path, 2):
        if key in table:
            raise DatasetLayoutError(f"{path}: id {key!r} appears twice; {DAMAGED}")
        table[key] = value
    return table


def to_int(value: Any, path: Path) -> int:
    """An integer field, or an error naming the file it came from."""
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise DatasetLayoutError(f"{path}: {value!r} is not an integer; {DAMAGED}") from error


def load_mat(path: Path, *keys: str) -> dict[str, Any]:
    """Read the named variables of a MATLAB file (``squeeze_me``: scalars and 1-D arrays)."""
    from scipy.io import loadmat

    try:
        content = loadmat(path, squeeze_me=True)
    except (OSError, ValueError, TypeError, NotImplementedError) as error:
        raise DatasetLayoutError(f"cannot read MATLAB file {path} ({error}); {DAMAGED}") from error
    missing = [k for k in keys if k not in content]
    if missing:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DatasetLayoutError(f"{path} lacks variable(s) {missing} (it has {found}); {DAMAGED}")
    return {k: content[k] for k in keys}


def as_list(array: Any) -> list[Any]:
    """A squeezed MATLAB array as a Python list (a one-element array squeezes to a scalar)."""
    return np.atleast_1d(array).tolist()


def check_labels(labels: list[int], num_classes: int, path: Path) -> None:
    """Zero-based labels must name one of the dataset's classes."""
    bad = sorted({label for label in labels if not 0 <= label < num_classes})
    if bad:
        raise DatasetLayoutError(
            f"{path} uses class number(s) {[b + 1 for b in bad[:5]]} outside 1..{num_classes}; {DAMAGED}"
        )
