"""Evaluation metrics: top-1, mean per-class accuracy and many/medium/few groups for long-tail splits."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

GROUPS = ("many", "medium", "few")


class GroupAccuracy(MulticlassAccuracy):
    """Mean per-class accuracy over a subset of the classes (e.g. the long tail's ``few`` group)."""

    def __init__(self, num_classes: int, classes: list[int]):
        super().__init__(num_classes=num_classes, average="none")
        if not classes:
            raise ValueError("a class group needs at least one class")
        self.classes = classes

    def compute(self) -> Tensor:
        per_class = super().compute()
        return per_class[torch.tensor(self.classes, device=per_class.device)].mean()


def classification_metrics(
    stage: str, num_classes: int, class_names: list[str] | None = None, class_groups: Mapping[str, str] | None = None
) -> MetricCollection:
    """``{stage}/acc`` (top-1 over images), ``{stage}/acc_per_class`` (mean of per-class accuracies)
    and, when ``class_groups`` maps class names to many/medium/few, ``{stage}/acc_<group>``."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "acc_per_class": MulticlassAccuracy(num_classes=num_classes, average="macro"),
    }
    if class_groups:
        if class_names is None:
            raise ValueError("class_groups are keyed by class name; pass class_names too")
        for group in GROUPS:
            members = [label for label, name in enumerate(class_names) if class_groups.get(name) == group]
            if members:
                metrics[f"acc_{group}"] = GroupAccuracy(num_classes, members)
    return MetricCollection(metrics, prefix=f"{stage}/")
