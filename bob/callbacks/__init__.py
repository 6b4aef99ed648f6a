"""Lightning callbacks; importing this registers their short names for YAML."""

from bob.callbacks.caption_writer import CaptionWriter
from bob.callbacks.lora_export import LoRAExport
from bob.callbacks.on_the_fly_generation import OnTheFlyGeneration
from bob.callbacks.prediction_writer import PredictionWriter
from bob.callbacks.progress import StepProgressBar
from bob.callbacks.sample_grid import SampleGrid
from bob.callbacks.synthetic_writer import SyntheticSetWriter

__all__: list[str] = ["CaptionWriter", "LoRAExport", "OnTheFlyGeneration", "SampleGrid", "StepProgressBar", "SyntheticSetWriter"]
__all__ += ["PredictionWriter"]
