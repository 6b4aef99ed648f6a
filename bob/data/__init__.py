"""Plain datasets and value types, no Lightning: readers, splits, records, caption banks."""

from bob.data.datasets import *  # noqa: F403  (short class names for YAML)
from bob.data.datasets import __all__ as _dataset_names
from bob.data.external_splits import load_split_source
from bob.data.longtail import sample_longtail_split
from bob.data.records import ImageRecord
from bob.data.splits import FewShotSplit, sample_fewshot_split

__all__ = [
    *_dataset_names, "ImageRecord", "FewShotSplit", "sample_fewshot_split", "sample_longtail_split", "load_split_source",
]
