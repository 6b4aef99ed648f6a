"""A captioner for the toy world that answers with the true background and pose the renderer recorded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from bob.data.errors import BobInputError
from bob.data.fingerprints import file_sha256
from bob.datamodules.surface import stage_data
from bob.toyworld.dataset import WORLD_FILE, WorldImage, ground_truth_context, read_world


class GroundTruthCaptioner(LightningModule):
    """The caption stage on the toy world, without a VLM: every training shot's recorded
    background and pose, phrased like a VLM's varying answers (a sample's phrasing is fixed).

    ``predict_step`` returns the same per-image dicts as `bob.modules.Captioner`, so a
    `CaptionWriter` turns them into a caption bank; its settings record ``source: ground_truth``.

    Args:
        world_file: the dataset's ``world.jsonl``; None reads it from the dataset root of the
            datamodule.
        class_names: raw class names in label order (linked from the data).
    """

    def __init__(self, world_file: str | None = None, class_names: list[str] | None = None):
        super().__init__()
        self.world_file = world_file
        self.class_names = list(class_names or [])
        self._world: dict[str, WorldImage] | None = None

    @property
    def attributes(self) -> list[str]:
        return ["background", "pose"]

    def _world_path(self) -> Path:
        if self.world_file is not None:
            return Path(self.world_file)
        return stage_data(self.trainer, "GroundTruthCaptioner (without world_file)").dataset.root / WORLD_FILE

    @property
    def caption_settings(self) -> dict[str, Any]:
        path = self._world_path()
        return {"source": "ground_truth", "world_file": str(path), "world_sha256": file_sha256(path)}

    def world(self) -> dict[str, WorldImage]:
        if self._world is None:
            self._world = read_world(self._world_path())
        return self._world

    @torch.no_grad()
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        world = self.world()
        results = []
        for sample_id, label in zip(batch["sample_id"], batch["label"], strict=False):
            class_name = self.class_names[int(label)] if self.class_names else None
            truth = world.get(sample_id)
            if truth is None:
                results.append({"sample_id": sample_id, "class_name": class_name, "error": "not in the world file"})
                continue
            if class_name is not None and truth.class_name != class_name:
                raise BobInputError(
                    f"{sample_id} is labelled {class_name!r} but the world file says {truth.class_name!r}; "
                    "the dataset and its world.jsonl do not belong together"
                )
            results.append(
                {"sample_id": sample_id, "class_name": truth.class_name, "attributes": ground_truth_context(truth),
                 "raw": {}, "notes": []}
            )
        return results
