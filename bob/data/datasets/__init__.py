"""Readers for the supported dataset layouts."""

from bob.data.datasets.base import DatasetReader
from bob.data.datasets.folders import ClassFolders

__all__ = ["DatasetReader", "ClassFolders"]
