"""LightningDataModules; importing this registers their short names for YAML."""

import bob.data  # noqa: F401  (dataset readers resolve by short name too)
from bob.datamodules.captions import CaptionDataModule
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.generation import GenerationDataModule
from bob.datamodules.predict_images import ImagePredictDataModule
from bob.datamodules.real_synthetic import RealSyntheticDataModule
from bob.datamodules.synthetic_quality import SyntheticQualityDataModule

__all__ = ["CaptionDataModule", "FewShotDataModule", "GenerationDataModule", "RealSyntheticDataModule"]
__all__ += ["SyntheticQualityDataModule"]
__all__ += ["ImagePredictDataModule"]
