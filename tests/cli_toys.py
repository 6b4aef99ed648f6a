"""A minimal LightningModule that receives the CLI's linked values, for CLI tests."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule


class LinkedToyModule(LightningModule):
    """Mean-colour linear classifier; records what the CLI linked into it.

    Args:
        num_classes: linked from the data.
        class_names: linked from the data.
        descriptor: linked from the data.
        lr: learning rate.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        descriptor: str | None = None,
        lr: float = 0.1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.head = torch.nn.Linear(3, num_classes or 1)

    def _loss(self, batch):
        features = batch["image"].mean(dim=(2, 3))
        return torch.nn.functional.cross_entropy(self.head(features), batch["label"])

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
