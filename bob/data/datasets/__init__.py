"""Readers for the supported dataset layouts."""

from bob.data.datasets.aircraft import FGVCAircraft
from bob.data.datasets.base import DatasetReader
from bob.data.datasets.cars import StanfordCars
from bob.data.datasets.cub import CUB200
from bob.data.datasets.flowers import Flowers102
from bob.data.datasets.folders import ClassFolders
from bob.data.datasets.pets import OxfordPets

__all__ = ["DatasetReader", "ClassFolders", "FGVCAircraft", "CUB200", "StanfordCars", "OxfordPets", "Flowers102"]
