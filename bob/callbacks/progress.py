"""A training progress bar that counts optimizer steps when the run is sized in steps."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar


def sized_in_steps(trainer: Trainer) -> bool:
    """True when ``trainer.max_steps`` ends the run and no ``max_epochs`` is set (Lightning then uses -1)."""
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, with a training bar that says how far the run is.

    A run sized in steps (``trainer.max_steps`` without ``max_epochs``, as the LoRA fine-tuning
    of the toy world) gets one training bar over all its optimizer steps, ``Epoch 59: 123/300``;
    Lightning's own bars count each epoch's batches and label them ``Epoch 59/-2`` there. A run
    sized in epochs keeps the per-epoch bar, labelled ``Epoch 3/99``. The CLI uses this bar when
    the config names none. Arguments are those of `lightning.pytorch.callbacks.TQDMProgressBar`.
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if sized_in_steps(trainer):
            bar = self.train_progress_bar
            bar.reset(total=trainer.max_steps)
            self._show(bar, trainer.global_step)  # a resumed run starts where it stopped

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        if sized_in_steps(trainer):
            self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")
            return
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}/{trainer.max_epochs - 1}")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not sized_in_steps(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        step = trainer.global_step
        if self.is_enabled and (step % self.refresh_rate == 0 or step == trainer.max_steps):
            self._show(self.train_progress_bar, step)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not sized_in_steps(trainer):
            super().on_train_epoch_end(trainer, pl_module)
        elif not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    @staticmethod
    def _show(bar: Any, value: int) -> None:
        if not bar.disable:
            bar.n = value
            bar.refresh()


def use_step_progress_bar(trainer: Trainer, configured: list[Callback]) -> None:
    """Put a `StepProgressBar` where Lightning added its default bar, unless ``configured`` names a bar."""
    if any(isinstance(callback, ProgressBar) for callback in configured):
        return
    for index, callback in enumerate(trainer.callbacks):
        if isinstance(callback, ProgressBar):
            trainer.callbacks[index] = StepProgressBar()
