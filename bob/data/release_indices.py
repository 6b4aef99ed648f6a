"""The authors' index files (pickled lists of positions) read without running pickle code, and the
long-tail protocol that carves validation and test images out of the official test split with them."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from bob.data.datasets.base import DatasetReader
from bob.data.errors import SplitError
from bob.data.records import ImageRecord

#: The only globals an index file may name: numpy's array reconstruction (for a pickled
#: ``numpy.ndarray`` of positions). Anything else — a function, a class, ``os.system`` — is refused
#: before it is looked up, so reading an index file never runs code from it.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"an index file may hold only integers, but it names {module}.{name}")
        return super().find_class(module, name)


def read_index_file(path: str | Path) -> list[int]:
    """The positions in a pickled list, tuple, set or numpy array of non-negative integers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SplitError(
            f"index file {path} does not exist; the long-tail protocol's index files are in the authors' "
            "repository (dataset/validation_splits/, see docs/datasets.md)"
        )
    try:
        loaded = _IndexUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise SplitError(f"{path} is not an index file (a pickled list of integers): {error}") from error
    values = loaded.tolist() if hasattr(loaded, "tolist") else loaded
    if isinstance(values, set):
        values = sorted(values)
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise SplitError(f"{path} holds {type(loaded).__name__}, not a list of integer positions")
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise SplitError(f"{path}: positions must be distinct and non-negative")
    return list(values)


def records_at(records: list[ImageRecord], positions: list[int], path: str | Path) -> list[ImageRecord]:
    """The records at ``positions`` of ``records`` (the order the index file was made for)."""
    beyond = [p for p in positions if p >= len(records)]
    if beyond:
        raise SplitError(
            f"{path} points at position(s) {beyond[:5]} but the official test split has {len(records)} images; "
            "the index file belongs to another dataset or version"
        )
    return [records[p] for p in positions]


def carve_test_split(
    reader: DatasetReader, val_indices: str | Path, test_indices: str | Path
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Validation and test images taken from the official test split by the release's index files.

    The positions count the test images in the order the authors' loaders enumerate them
    (`DatasetReader.release_order`). The two parts must not overlap.
    """
    ordered = reader.release_order("test")
    val = records_at(ordered, read_index_file(val_indices), val_indices)
    test = records_at(ordered, read_index_file(test_indices), test_indices)
    shared = {r.sample_id for r in val} & {r.sample_id for r in test}
    if shared:
        raise SplitError(f"{val_indices} and {test_indices} share {len(shared)} image(s), e.g. {sorted(shared)[:3]}")
    return val, test
