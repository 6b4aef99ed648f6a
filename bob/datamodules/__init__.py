"""LightningDataModules; importing this registers their short names for YAML."""

import bob.data  # noqa: F401  (dataset readers resolve by short name too)
from bob.datamodules.fewshot import FewShotDataModule

__all__ = ["FewShotDataModule"]
