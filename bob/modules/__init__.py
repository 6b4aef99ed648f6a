"""LightningModules; importing this registers their short names for YAML."""

from bob.modules.captioner import Captioner
from bob.modules.classifier import Backbone, Classifier, CLIPBackbone, TimmBackbone
from bob.modules.diffusion import LoRAFineTuner
from bob.modules.generator import SyntheticImageGenerator
from bob.modules.synthetic_quality import SyntheticQuality

__all__: list[str] = ["Captioner", "Backbone", "Classifier", "CLIPBackbone", "TimmBackbone", "LoRAFineTuner", "SyntheticImageGenerator"]
__all__ += ["SyntheticQuality"]
