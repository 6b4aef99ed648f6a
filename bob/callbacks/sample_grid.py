"""A fixed-seed grid of samples (rows: classes, columns: contexts) logged while a diffusion model trains."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torchvision.utils import make_grid

from bob.datamodules.surface import stage_data
from bob.runs import run_folder


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread over ``range(total)``, always including the first."""
    count = min(count, total)
    return [round(i * total / count) for i in range(count)]


def grid_image(images: torch.Tensor, columns: int) -> torch.Tensor:
    """``images`` (N x C x H x W in [0, 1]) laid out ``columns`` wide, as one uint8 C x H x W tensor."""
    grid = make_grid(images.float().clamp(0, 1), nrow=columns, padding=2, pad_value=1.0)
    return (grid * 255).round().byte().cpu()


class SampleGrid(Callback):
    """Generates the same prompts from the same noise every ``every_n_steps`` optimizer steps.

    Rows are classes spread over the class list; columns are contexts drawn once (with
    ``seed``) from the caption bank, or only different seeds in class-only mode. Column j uses
    seed ``seed + j`` in every row, so rows differ by class alone. The grid goes to the logger
    (W&B image, TensorBoard image) and to ``samples/step_<N>.png`` in the run's folder.
    Generation runs on rank 0 only.

    Args:
        every_n_steps: optimizer steps between grids; grids are also made when training starts
            and when fit ends.
        num_classes: rows.
        num_contexts: columns.
        seed: seed of the context draw and of the initial noise.
        num_inference_steps: sampler steps.
        guidance_scale: classifier-free guidance (the paper generates with 2.0).
        key: logger key of the image.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_classes: int = 4,
        num_contexts: int = 4,
        seed: int = 0,
        num_inference_steps: int = 25,
        guidance_scale: float = 2.0,
        key: str = "train/samples",
    ):
        self.every_n_steps = every_n_steps
        self.num_classes = num_classes
        self.num_contexts = num_contexts
        self.seed = seed
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.key = key
        self._folder: Path | None = None
        self._last_step = -1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._folder = run_folder(trainer) / "samples"

    def prompts(self, trainer: Trainer, pl_module: LightningModule) -> tuple[list[str], int]:
        """The grid's prompts in row-major order, and the number of columns."""
        classes = evenly_spaced(self.num_classes, len(pl_module.prompt_names))
        contexts: list[dict[str, str] | None] = [None] * self.num_contexts
        if pl_module.template.attributes:
            pool = stage_data(trainer, "SampleGrid").caption_bank.contexts()
            contexts = random.Random(self.seed).sample(pool, min(self.num_contexts, len(pool)))
        return [pl_module.prompt(label, context) for label in classes for context in contexts], len(contexts)

    @torch.no_grad()
    def sample(self, trainer: Trainer, pl_module: LightningModule) -> tuple[torch.Tensor, list[str]]:
        prompts, columns = self.prompts(trainer, pl_module)
        device = pl_module.device
        generators = [torch.Generator(device).manual_seed(self.seed + i % columns) for i in range(len(prompts))]
        pipeline = pl_module.pipeline()
        was_training = pl_module.training
        pl_module.eval()
        try:
            with trainer.precision_plugin.forward_context():
                images = pipeline(
                    prompts, height=pl_module.image_size, width=pl_module.image_size,
                    num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                    generator=generators, output_type="pt",
                ).images
        finally:
            pl_module.train(was_training)
        return grid_image(images, columns), prompts

    def log_grid(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        grid, prompts = self.sample(trainer, pl_module)
        image = Image.fromarray(grid.permute(1, 2, 0).numpy())
        path = self._folder / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        caption = " | ".join(prompts)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=self.key, images=[image], caption=[caption], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.key, grid, step)
        rank_zero_info(f"sample grid at step {step}: {path}")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.log_grid(trainer, pl_module)  # the starting point: base model, or the resumed checkpoint

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.log_grid(trainer, pl_module)

