"""Writes a classifier's top-k predictions, with class names, to CSV or JSON lines."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from bob.atomic import atomic_write_text
from bob.data.errors import BobInputError
from bob.modules.classifier.predictions import check_prediction_format, format_predictions, top_k_rows
from bob.runs import run_folder

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"


class PredictionWriter(BasePredictionWriter):
    """Writes the ``top_k`` most probable classes of every predicted image.

    Works with a module whose ``predict_step`` returns ``sample_id`` and ``probabilities`` and
    which has ``class_names`` (`Classifier`). Each rank appends its rows to its own part file as
    batches finish (no gathers); when the run ends rank 0 joins them, in input order, into
    ``output`` and deletes the parts.

    Args:
        output: ``.csv`` (columns ``image, class_1, probability_1, class_2, ...``) or ``.jsonl``
            (one ``{"image", "predictions": [{"label", "class_name", "probability"}, ...]}`` a
            line); None writes ``predictions.csv`` in the run's folder (beside its ``config.yaml``).
        top_k: classes per image, most probable first.
    """

    def __init__(self, output: str | None = None, top_k: int = 5):
        super().__init__(write_interval="batch")
        if top_k < 1:
            raise BobInputError(f"top_k must be >= 1, got {top_k}")
        if output is not None:
            check_prediction_format(output)
        self.output = output
        self.top_k = top_k
        self.path: Path | None = None
        self._class_names: list[str] = []

    @property
    def parts(self) -> Path:
        return self.path.parent / f".{self.path.name}.parts"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        names = getattr(pl_module, "class_names", None) or getattr(pl_module, "prompt_names", None)
        if not names:
            raise BobInputError(
                f"PredictionWriter writes class names, but {type(pl_module).__name__} has no class_names; "
                "use it with a Classifier (python main.py predict -c configs/predict.yaml --ckpt_path ...)"
            )
        self._class_names = list(names)
        folder = run_folder(trainer)  # collective under DDP: every rank calls it
        self.path = Path(self.output) if self.output is not None else folder / PREDICTIONS_FILE
        if trainer.is_global_zero:
            shutil.rmtree(self.parts, ignore_errors=True)  # a killed run's rows
            self.parts.mkdir(parents=True)
        trainer.strategy.barrier("prediction_writer_start")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Rows go to disk; kept in memory too, a large folder's probabilities would pile up.
        trainer.predict_loop.return_predictions = False

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        rows = top_k_rows(prediction["sample_id"], prediction["probabilities"], self._class_names, self.top_k)
        indices = list(batch_indices) if batch_indices is not None else [None] * len(rows)
        with open(self.parts / f"rank{trainer.global_rank}.jsonl", "a", encoding="utf-8") as file:
            for index, row in zip(indices, rows, strict=True):
                file.write(json.dumps({"index": index, **row}, ensure_ascii=False) + "\n")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict" or self.path is None:
            return
        trainer.strategy.barrier("prediction_writer_written")
        if trainer.is_global_zero:
            self.join_parts()
        trainer.strategy.barrier("prediction_writer_joined")

    def join_parts(self) -> Path:
        """Write ``output`` from the part files, in input order, and delete them (rank 0)."""
        rows = []
        for part in sorted(self.parts.glob("rank*.jsonl")):
            rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
        rows.sort(key=lambda row: (row["index"] is None, row["index"] or 0))
        rows = [{k: v for k, v in row.items() if k != "index"} for row in rows]
        atomic_write_text(self.path, format_predictions(rows, check_prediction_format(self.path)))
        shutil.rmtree(self.parts, ignore_errors=True)
        log.info("wrote the top-%d predictions of %d image(s) to %s", self.top_k, len(rows), self.path)
        return self.path
