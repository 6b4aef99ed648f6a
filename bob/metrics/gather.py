"""Collecting per-image results from every process: tensors by torchmetrics' sync, labels as objects."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class FeatureBank(Metric):
    """Features, labels and flags of every image any process saw, keyed by dataset index.

    ``compute`` gathers the rows of all processes (torchmetrics' own sync, uneven sizes
    allowed) and returns them sorted by index with repeats dropped: under DDP the test
    sampler pads the last batches with copies of the first samples.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("features", "indices", "labels", "synthetic"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, features: Tensor, labels: Tensor, indices: Tensor, synthetic: Tensor) -> None:
        self.features.append(features.detach().float())
        self.labels.append(labels.detach().long())
        self.indices.append(indices.detach().long())
        self.synthetic.append(synthetic.detach().long())

    def compute(self) -> dict[str, Tensor]:
        indices = dim_zero_cat(self.indices)
        order = torch.argsort(indices, stable=True)
        ordered = indices[order]
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[1:] = ordered[1:] != ordered[:-1]
        keep = order[first]
        return {
            "features": dim_zero_cat(self.features)[keep],
            "labels": dim_zero_cat(self.labels)[keep],
            "indices": indices[keep],
            "synthetic": dim_zero_cat(self.synthetic)[keep].bool(),
        }


def gather_objects(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]``; just ``[value]`` outside a process group."""
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()) or distributed.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * distributed.get_world_size()
    distributed.all_gather_object(gathered, value)
    return gathered
