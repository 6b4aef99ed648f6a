"""Writes generated images and their manifests; refuses to mix two recipes in one folder."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image

from bob.artifacts import StageArtifact, link_stage_artifacts, stage_artifact
from bob.atomic import atomic_write
from bob.data.generation_plan import PlanItem
from bob.data.images import load_rgb
from bob.data.synthetic_set import SyntheticSetFolder
from bob.datamodules.surface import GenerationData, stage_data
from bob.versions import package_versions

log = logging.getLogger(__name__)

PREVIEW_FILE = "preview.jpg"


def set_identity(pl_module: Any, datamodule: GenerationData) -> dict[str, Any]:
    """The recipe a synthetic folder is bound to: model, adapter, sampler, plan and file format."""
    return {"generator": pl_module.identity(), "data": datamodule.identity()}


def set_summary(pl_module: Any, datamodule: GenerationData) -> dict[str, Any]:
    """``manifest.json`` fields beyond the identity: plan description, inputs, versions."""
    return {**datamodule.describe(), "generator": pl_module.describe(), "versions": package_versions()}


def generation_inputs(pl_module: Any, datamodule: GenerationData) -> list[StageArtifact]:
    """The stage outputs a synthetic set is made from: the LoRA adapter and the caption bank."""
    inputs = []
    weights = pl_module.lora_weights()
    if weights is not None:
        inputs.append(stage_artifact("lora", weights.parent))
    bank = datamodule.describe()["inputs"]["caption_bank"]
    if bank is not None:
        inputs.append(stage_artifact("caption_bank", bank))
    return inputs


def preview_grid(folder: SyntheticSetFolder, planned: list[PlanItem], classes: int, columns: int, size: int) -> Image.Image | None:
    """The first ``columns`` images of the first ``classes`` planned classes, one row per class."""
    rows: dict[int, list[PlanItem]] = {}
    for item in planned:
        if item.label not in rows and len(rows) == classes:
            break
        row = rows.setdefault(item.label, [])
        if len(row) < columns:
            row.append(item)
    if not rows:
        return None
    blank = np.full((size, size, 3), 255, np.uint8)
    lines = []
    for row in rows.values():
        tiles = []
        for item in row:
            path = folder.folder / folder.image_file(item.key)
            tiles.append(np.asarray(load_rgb(path).resize((size, size))) if path.is_file() else blank)
        tiles += [blank] * (columns - len(tiles))
        lines.append(np.concatenate(tiles, axis=1))
    return Image.fromarray(np.concatenate(lines, axis=0))


class BackgroundWrites:
    """Encodes and writes images on worker threads while the accelerator makes the next batch.

    PNG encoding of a 512 px image takes tens of milliseconds of CPU (Pillow releases the GIL
    meanwhile); done inline, it would leave the GPU idle for as long. ``threads=0`` writes
    inline. At most ``max_pending`` writes wait, so memory stays bounded.
    """

    def __init__(self, threads: int, max_pending: int = 64):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="synthetic-write") if threads > 0 else None
        self.max_pending = max_pending
        self.pending: deque[Future] = deque()

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        if self.pool is None:
            write(*args)
            return
        self.pending.append(self.pool.submit(write, *args))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()

    def wait(self) -> None:
        """Block until every submitted write is on disk; re-raises a failed write's error."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class SyntheticSetWriter(BasePredictionWriter):
    """Writes each generated image and its manifest line on the rank that made it.

    Before any weights load, every rank checks the output folder: a folder made by another
    model, adapter, sampler setting, plan or image format is refused. Images and per-image
    sidecars are written atomically as batches finish, so a killed run loses at most the
    batches in flight. When the run ends rank 0 writes ``manifest.jsonl`` in plan order and
    ``manifest.json`` (``complete`` once every planned image exists), and logs a preview grid
    (first images of the first classes) to the logger and to ``preview.jpg``.

    Args:
        preview_classes: rows of the preview grid (first classes of the plan).
        preview_images: columns of the preview grid (first images of each class).
        preview_size: side of each preview tile in pixels.
        write_threads: threads per rank that encode and write images while the next batch is
            generated; 0 writes inline.
    """

    def __init__(
        self, preview_classes: int = 16, preview_images: int = 8, preview_size: int = 128, write_threads: int = 2
    ):
        super().__init__(write_interval="batch")
        self.preview_classes = preview_classes
        self.preview_images = preview_images
        self.preview_size = preview_size
        self.write_threads = write_threads
        self._writes: BackgroundWrites | None = None
        self._started = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        datamodule = stage_data(trainer, "SyntheticSetWriter", GenerationData)
        pl_module.check_available()
        trained_with, template = pl_module.lora_manifest.get("template"), datamodule.plan.template.template
        if trained_with is not None and trained_with != template:
            rank_zero_warn(
                f"the LoRA was trained on prompts {trained_with!r} but this plan uses {template!r}; "
                "right for the paper's preservation-only / marginalization-only ablations, a mistake otherwise"
            )
        identity = set_identity(pl_module, datamodule)
        datamodule.folder.check_identity(identity)  # on every rank, so all stop together
        trainer.strategy.barrier("synthetic_check")
        if trainer.is_global_zero:
            datamodule.folder.start(identity, set_summary(pl_module, datamodule))
        trainer.strategy.barrier("synthetic_start")
        self._started = time.perf_counter()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Images go to disk; kept in memory too, a large set would exhaust it.
        trainer.predict_loop.return_predictions = False
        self._writes = BackgroundWrites(self.write_threads)

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        datamodule = stage_data(trainer, "SyntheticSetWriter", GenerationData)
        extra = pl_module.line_fields()
        # The items as generated: a prompt fitted to the token limit is recorded as it was used.
        for item, image in zip(prediction["item"], prediction["image"], strict=True):
            self._writes.submit(datamodule.folder.write, item, image, extra)

    def _close_writes(self) -> None:
        if self._writes is not None:
            self._writes.wait()
            self._writes.close()
            self._writes = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Images already generated are finished, so a resumed run need not make them again.
        if self._writes is not None:
            self._writes.close()
            self._writes = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Not `on_predict_end`: Lightning skips the predict loop, hooks included, on a rank
        # whose share is empty, while teardown runs on every rank after a successful run.
        if stage != "predict":
            return
        self._close_writes()
        trainer.strategy.barrier("synthetic_written")
        if trainer.is_global_zero:
            self.finish(trainer, pl_module, stage_data(trainer, "SyntheticSetWriter", GenerationData))
        trainer.strategy.barrier("synthetic_finished")

    def finish(self, trainer: Trainer, pl_module: LightningModule, datamodule: GenerationData) -> None:
        """Assemble the manifests, then report and log a preview (rank 0)."""
        seconds = time.perf_counter() - self._started
        summary = datamodule.folder.finish([i.key for i in datamodule.plan.items], set_summary(pl_module, datamodule))
        written = datamodule.num_pending
        rate = written / seconds if seconds > 0 else 0.0
        log.info(
            "wrote %d image(s) in %.1f s (%.2f images/s over %d device(s)); set %s: %d of %d, complete=%s",
            written, seconds, rate, trainer.world_size, datamodule.output_dir,
            summary["num_images"], summary["num_planned"], summary["complete"],
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {"generate/images_written": written, "generate/images_per_second": rate,
                 "generate/num_images": summary["num_images"]},
                step=0,
            )
        self.log_preview(trainer, datamodule)
        link_stage_artifacts(trainer, generation_inputs(pl_module, datamodule), stage_artifact("synthetic_set", datamodule.output_dir))

    def log_preview(self, trainer: Trainer, datamodule: GenerationData) -> None:
        grid = preview_grid(
            datamodule.folder, datamodule.plan.items, self.preview_classes, self.preview_images, self.preview_size
        )
        if grid is None:
            return
        atomic_write(datamodule.output_dir / PREVIEW_FILE, lambda tmp: grid.save(tmp, format="JPEG", quality=90))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="generate/preview", images=[grid], caption=["rows: classes, columns: first images"])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("generate/preview", np.asarray(grid), 0, dataformats="HWC")
