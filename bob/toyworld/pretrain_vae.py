"""Stage A of the toy prior: an `AutoencoderKL` that maps 64x64 images to small latents."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from bob.datamodules.surface import stage_data
from bob.modules.class_specs import factory_argument
from bob.toyworld.broad_world import BroadWorldDataModule
from bob.toyworld.model_card import read_training_facts, write_training_facts

log = logging.getLogger(__name__)
#: AdamW without weight decay (the spelling of a config; the module builds its own copy).
VAE_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 0.0}}


def build_vae(channels: tuple[int, ...] = (32, 64, 64), image_size: int = 64, latent_channels: int = 8):
    """The toy prior's VAE: one halving of the side per block after the first."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=min(32, channels[0]),
        sample_size=image_size,
    )


class ToyVAEPretraining(LightningModule):
    """Trains the toy prior's VAE on broad-world renders and saves it as a diffusers folder.

    The saved config carries a ``scaling_factor`` measured on training latents (1 / their
    standard deviation), as Stable Diffusion's VAE does, so the UNet sees unit-variance latents.

    Args:
        output_dir: where the diffusers ``AutoencoderKL`` folder is written (at the end of fit).
        channels: block widths; ``len(channels) - 1`` halvings of the image side.
        latent_channels: channels of the latent. Where the information sits matters more than
            how much: one halving with 4 channels keeps the small painted parts far better
            than two halvings with 8 or 16 channels (docs/toyworld.md).
        optimizer: the optimizer (``class_path`` + ``init_args``, as every bob module spells
            it); its learning rate is warmed up, then cosine-decayed to a tenth over the run.
        kl_weight: weight of the KL term; tiny, as in latent diffusion, to keep latents sharp.
        object_weight: weight of aircraft pixels in the reconstruction loss relative to
            background pixels (1 = plain MSE). The classes differ in small painted parts that
            weigh little in a plain pixel average; weighing the aircraft more spends the
            autoencoder's capacity where the classes are.
        image_size: side of the training images.
        schedule_steps: length of the warm-up + cosine learning-rate schedule; None = the run's
            own steps. Longer than ``trainer.max_steps`` stops a run part-way down its schedule
            (the shipped VAE: step 750 of 1500, where it met its fidelity target).
        save_every_n_steps: also save the VAE this often, so a run stopped early leaves one.
        init_from: a VAE folder of the same architecture to continue training from (a second
            round with a fresh learning-rate schedule); None starts from random weights.
    """

    def __init__(
        self,
        output_dir: str = "runs/toyworld/prior_vae",
        channels: tuple[int, ...] = (32, 64, 64),
        latent_channels: int = 8,
        optimizer: OptimizerCallable = VAE_OPTIMIZER,
        kl_weight: float = 1e-6,
        object_weight: float = 1.0,
        image_size: int = 64,
        schedule_steps: int | None = None,
        save_every_n_steps: int = 200,
        init_from: str | None = None,
    ):
        super().__init__()
        self.optimizer_factory, spec = factory_argument(optimizer, torch.optim.Optimizer, "the toy VAE's optimizer")
        self.save_hyperparameters(ignore=["optimizer"])
        self.save_hyperparameters({"optimizer": spec})
        self.output_dir = Path(output_dir)
        self.vae = None
        self._mse_average: float | None = None
        self._started = time.monotonic()
        self._earlier: dict = {}

    def configure_model(self) -> None:
        if self.vae is not None:
            return
        if self.hparams.init_from is not None:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(self.hparams.init_from, dtype=torch.float32)
            self._earlier = read_training_facts(self.hparams.init_from)
        else:
            self.vae = build_vae(tuple(self.hparams.channels), self.hparams.image_size, self.hparams.latent_channels)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"] * 2.0 - 1.0
        posterior = self.vae.encode(images).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample
        mse = F.mse_loss(reconstruction, images)
        weights = 1.0 + (self.hparams.object_weight - 1.0) * batch["mask"]
        weighted = ((reconstruction - images).square() * weights).mean() / weights.mean()
        kl = posterior.kl().mean()
        loss = weighted + self.hparams.kl_weight * kl
        self.log_dict({"train/loss": loss, "train/mse": mse, "train/kl": kl}, prog_bar=True)
        value = float(mse.detach())
        self._mse_average = value if self._mse_average is None else 0.98 * self._mse_average + 0.02 * value
        return loss

    def on_train_start(self) -> None:
        self._started = time.monotonic()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.vae.parameters())
        total = max(1, self.hparams.schedule_steps or int(self.trainer.estimated_stepping_batches))
        warmup = max(1, min(50, total // 10))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            # Cosine down to a tenth, not zero: the last steps still learn.
            return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def measured_scaling_factor(self, max_batches: int = 8) -> float:
        loader = stage_data(self.trainer, "ToyVAEPretraining", BroadWorldDataModule).train_dataloader()
        latents = []
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            latents.append(self.vae.encode(batch["image"].to(self.device) * 2.0 - 1.0).latent_dist.mean)
        return float(1.0 / torch.cat(latents).std())

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.global_step % self.hparams.save_every_n_steps == 0:
            self.save()

    def on_train_end(self) -> None:
        self.save(finished=True)

    def save(self, finished: bool = False) -> None:
        if not self.trainer.is_global_zero:
            return
        was_training = self.vae.training
        self.vae.eval()
        factor = self.measured_scaling_factor()
        data = stage_data(self.trainer, "ToyVAEPretraining", BroadWorldDataModule)
        self.vae.register_to_config(scaling_factor=factor)
        self.vae.save_pretrained(self.output_dir)
        write_training_facts(self.output_dir, {
            "steps": int(self.global_step) + self._earlier.get("steps", 0),
            "rounds": self._earlier.get("rounds", 1) + (1 if self._earlier else 0),
            "batch_size": data.batch_size,
            "pool_size": data.pool_size,
            "wall_time_minutes": round(
                (time.monotonic() - self._started) / 60.0 + self._earlier.get("wall_time_minutes", 0.0), 1
            ),
            "final_mse": None if self._mse_average is None else round(self._mse_average, 4),
            "scaling_factor": factor,
            "object_weight": self.hparams.object_weight,
            "schedule_steps": self.hparams.schedule_steps,
            "finished": finished,
        })
        self.vae.train(was_training)
        log.info("saved the toy VAE to %s (scaling factor %.4f)", self.output_dir, factor)
