"""Each run's own folder: where its config, manifest, checkpoints, samples and logs go."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer


def run_folder(trainer: Trainer) -> Path:
    """This run's own folder, as `ModelCheckpoint` places ``checkpoints/``: ``<save_dir>/<name>/<version>``.

    With bob's `WandbLogger` that is ``<save_dir>/<project>/<run id>`` (its W&B files go there
    too); with the CSV or TensorBoard logger ``<save_dir>/<name>/version_<n>``; without a
    logger, ``trainer.default_root_dir``. A collective call under DDP (rank 0 decides, as the
    logger's version may exist there only).
    """
    folder = Path(trainer.default_root_dir)
    if trainer.loggers and trainer.is_global_zero:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        folder = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
    return Path(trainer.strategy.broadcast(str(folder)))
