"""Measuring synthetic data: feature extractors, FID/KID/diversity, class–context dependence."""

from bob.metrics.distribution import frechet_distance, kernel_distance, mean_pairwise_distance
from bob.metrics.extractors import (
    CLIPImageFeatures,
    DINOv2Features,
    FeatureExtractor,
    InceptionFeatures,
    TimmFeatures,
    VAELatentFeatures,
)
from bob.metrics.quality_report import context_dependence

__all__ = [
    "CLIPImageFeatures",
    "DINOv2Features",
    "FeatureExtractor",
    "InceptionFeatures",
    "TimmFeatures",
    "VAELatentFeatures",
    "context_dependence",
    "frechet_distance",
    "kernel_distance",
    "mean_pairwise_distance",
]
