"""Stage 4: the downstream classifier on real + synthetic images, with swappable backbones."""

from bob.modules.classifier.backbone import Backbone
from bob.modules.classifier.clip import CLIPBackbone
from bob.modules.classifier.module import Classifier
from bob.modules.classifier.timm_backbone import TimmBackbone

__all__ = ["Backbone", "CLIPBackbone", "Classifier", "TimmBackbone"]
