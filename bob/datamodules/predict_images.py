"""Any images to classify, for ``predict``: a folder, a list file or one image, no labels, no split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from bob.data.image_list import list_images
from bob.data.images import load_uint8


class ImageFileDataset(Dataset):
    """Samples ``{"image": uint8 CHW tensor at the file's own size, "sample_id": the path}``."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        return {"image": load_uint8(path), "sample_id": str(path)}


def collate_images(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch that keeps each image at its own size: ``image`` is a list, the model resizes."""
    return {"image": [s["image"] for s in samples], "sample_id": [s["sample_id"] for s in samples]}


class ImagePredictDataModule(LightningDataModule):
    """Images to classify with a trained classifier (``python main.py predict``; see ``configs/predict.yaml``).

    Batches are ``{"image": [uint8 CHW tensors, each at its file's size], "sample_id": [paths]}``:
    the classifier resizes and crops them itself (`Classifier.preprocess`) as its validation
    images were, so nothing here depends on the model. Under DDP each image goes to one rank.

    Args:
        images: a folder (every image under it, recursively), a text file with one image path a
            line (relative paths are read from the list file's folder), or one image file.
        batch_size: images per batch on each device.
        num_workers: dataloader worker processes that decode the images.
    """

    def __init__(self, images: str, batch_size: int = 32, num_workers: int = 4):
        super().__init__()
        self.images = images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.paths: list[Path] = []

    def setup(self, stage: str) -> None:
        # Before any weights load, so a wrong path fails fast.
        self.paths = list_images(self.images)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            ImageFileDataset(self.paths), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, collate_fn=collate_images, persistent_workers=False,
        )
