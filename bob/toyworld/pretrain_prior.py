"""Stage B of the toy prior: UNet and text encoder trained jointly on broad-world latents and captions."""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from bob.datamodules.surface import stage_data
from bob.modules.class_specs import factory_argument
from bob.toyworld.broad_world import BroadWorldDataModule
from bob.toyworld.model_card import export_pipeline
from bob.toyworld.prior_parts import build_text_encoder, build_training_scheduler, build_unet
from bob.toyworld.tokenizer import build_tokenizer

log = logging.getLogger(__name__)
#: AdamW as the shipped prior was trained (the spelling of a config; the module builds its own copy).
PRIOR_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 6e-4, "weight_decay": 1e-2}}


class ToyPriorPretraining(LightningModule):
    """Pretrains the toy text-to-image prior and exports it as a `StableDiffusionPipeline` folder.

    The VAE comes from stage A and stays frozen; image latents are encoded once per pool image
    and cached. The exported folder holds the EMA weights in fp16 and a model card, and is
    rewritten every ``export_every_n_steps`` so a run stopped early still leaves a usable prior.

    Args:
        vae: folder of the stage-A `AutoencoderKL` (``ToyVAEPretraining``'s output).
        output_dir: where the pipeline folder is written.
        unet_channels: UNet block widths, one level per entry, each halving the latent side.
        plain_levels: finest UNet levels without cross-attention.
        pooled_text: also add a pooling of the prompt's encoding to the UNet's timestep
            embedding (`build_unet`), a conditioning path into every block besides
            cross-attention.
        attention_head_width: channels of each UNet attention head; 4, the shipped prior's,
            makes 32 heads at 128 channels (`build_unet`).
        text_hidden_size: width of the CLIP text encoder.
        text_layers: transformer layers of the text encoder.
        train_text_encoder: train the text encoder with the UNet. ``False`` keeps it at its
            seeded random initialisation, as Stable Diffusion keeps its CLIP text encoder frozen.
            Trained jointly, the encoder first erases the differences between names (about 1%
            of its output's norm from one name to another after 1,000 steps, against about 18%
            at initialisation); frozen, every name, a few-shot one included, stays as distinct
            as at initialisation (`bob.toyworld.name_reading`, docs/toyworld.md).
        optimizer: the optimizer of UNet and text encoder (``class_path`` + ``init_args``, as
            every bob module spells it); constant learning rate after warm-up, the EMA smooths.
        warmup_steps: linear warm-up steps.
        ema_decay: decay of the exponential moving average that is exported.
        min_snr_gamma: min-SNR loss weighting (Hang et al. 2023); 0 disables it. With
            v-prediction it weighs a step by min(SNR, gamma) / (SNR + 1), which is 0 at zero SNR.
        prediction_type: what the UNet predicts, ``"epsilon"`` (the noise) or ``"v_prediction"``.
        zero_terminal_snr: make the schedule's last step pure noise (needs v-prediction); see
            `build_training_scheduler`.
        object_weight: weight of the latents the aircraft covers in the denoising loss,
            relative to background latents (1 = plain MSE), as in the VAE's
            reconstruction loss: the names decide only small painted parts.
        export_every_n_steps: how often the pipeline folder is rewritten during training.
        reproduce_command: the command written into the model card.
    """

    def __init__(
        self,
        vae: str = "runs/toyworld/prior_vae/model",
        output_dir: str = "runs/toyworld/prior",
        unet_channels: tuple[int, ...] = (64, 128, 128),
        plain_levels: int = 1,
        pooled_text: bool = False,
        attention_head_width: int = 4,
        text_hidden_size: int = 128,
        text_layers: int = 3,
        train_text_encoder: bool = True,
        optimizer: OptimizerCallable = PRIOR_OPTIMIZER,
        warmup_steps: int = 200,
        ema_decay: float = 0.998,
        min_snr_gamma: float = 5.0,
        prediction_type: str = "epsilon",
        zero_terminal_snr: bool = False,
        object_weight: float = 1.0,
        export_every_n_steps: int = 500,
        reproduce_command: str = "python -m bob.toyworld.pretrain",
    ):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type={prediction_type!r}: use 'epsilon' or 'v_prediction'")
        if zero_terminal_snr and prediction_type != "v_prediction":
            raise ValueError("zero_terminal_snr=True needs prediction_type='v_prediction' (epsilon is undefined at zero signal)")
        self.optimizer_factory, spec = factory_argument(optimizer, torch.optim.Optimizer, "the toy prior's optimizer")
        self.save_hyperparameters(ignore=["optimizer"])
        self.save_hyperparameters({"optimizer": spec})
        self.output_dir = Path(output_dir)
        self.unet = None
        self._latent_cache: dict[int, torch.Tensor] = {}
        self._loss_average: float | None = None
        self._seconds_before = 0.0
        self._started = time.monotonic()

    def configure_model(self) -> None:
        if self.unet is not None:
            return
        from diffusers import AutoencoderKL

        with tempfile.TemporaryDirectory() as folder:
            self.tokenizer = build_tokenizer(folder)
        self.vae = AutoencoderKL.from_pretrained(self.hparams.vae).requires_grad_(False).eval()
        self.text_encoder = build_text_encoder(self.tokenizer, self.hparams.text_hidden_size, self.hparams.text_layers)
        self.unet = build_unet(
            tuple(self.hparams.unet_channels), self.hparams.text_hidden_size,
            self.vae.config.sample_size // 2 ** (len(self.vae.config.block_out_channels) - 1),
            self.vae.config.latent_channels, self.hparams.plain_levels, self.hparams.pooled_text,
            self.hparams.attention_head_width,
        )
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        if self.hparams.train_text_encoder:
            self.ema_text_encoder = copy.deepcopy(self.text_encoder).requires_grad_(False)
        else:
            # Frozen: its average is itself, and the export takes it as it is.
            self.text_encoder.requires_grad_(False).eval()
            self.ema_text_encoder = self.text_encoder
        self.noise_scheduler = build_training_scheduler(self.hparams.prediction_type, self.hparams.zero_terminal_snr)

    @torch.no_grad()
    def latents(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        missing = [i for i, index in enumerate(indices.tolist()) if index not in self._latent_cache]
        if missing:
            encoded = self.vae.encode(images[missing] * 2.0 - 1.0).latent_dist.mean * self.vae.config.scaling_factor
            for row, latent in zip(missing, encoded, strict=False):
                self._latent_cache[int(indices[row])] = latent.cpu()
        return torch.stack([self._latent_cache[int(i)] for i in indices]).to(images.device)

    def encode_text(self, captions: list[str], encoder) -> torch.Tensor:
        tokens = self.tokenizer(
            captions, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        return encoder(tokens.input_ids.to(self.device))[0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        latents = self.latents(batch["image"], batch["index"])
        noise = torch.randn_like(latents)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), device=self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, self.encode_text(batch["caption"], self.text_encoder)).sample
        velocity = self.hparams.prediction_type == "v_prediction"
        target = self.noise_scheduler.get_velocity(latents, noise, timesteps) if velocity else noise
        squared = F.mse_loss(prediction, target, reduction="none")
        if self.hparams.object_weight != 1.0:
            # The render's aircraft coverage averaged over each latent's pixels.
            coverage = F.adaptive_avg_pool2d(batch["mask"], latents.shape[-2:])
            weights = 1.0 + (self.hparams.object_weight - 1.0) * coverage
            squared = squared * weights / weights.mean(dim=(1, 2, 3), keepdim=True)
        per_sample = squared.mean(dim=(1, 2, 3))
        if self.hparams.min_snr_gamma > 0:
            alphas = self.noise_scheduler.alphas_cumprod.to(self.device)[timesteps]
            snr = alphas / (1.0 - alphas)
            per_sample = per_sample * snr.clamp(max=self.hparams.min_snr_gamma) / (snr + 1.0 if velocity else snr)
        loss = per_sample.mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        from diffusers.optimization import get_constant_schedule_with_warmup

        parameters = [*self.unet.parameters()]
        if self.hparams.train_text_encoder:
            parameters += self.text_encoder.parameters()
        optimizer = self.optimizer_factory(parameters)
        scheduler = get_constant_schedule_with_warmup(optimizer, self.hparams.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up of the decay: early EMA weights would otherwise stay near the random init.
        decay = min(self.hparams.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        pairs = [(self.ema_unet, self.unet)]
        if self.hparams.train_text_encoder:
            pairs.append((self.ema_text_encoder, self.text_encoder))
        for ema, live in pairs:
            for e, p in zip(ema.parameters(), live.parameters(), strict=False):
                e.lerp_(p.detach(), 1.0 - decay)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._update_ema()
        loss = float(outputs["loss"])
        self._loss_average = loss if self._loss_average is None else 0.99 * self._loss_average + 0.01 * loss
        if self.global_step % self.hparams.export_every_n_steps == 0:
            self.export()

    def on_train_start(self) -> None:
        self._started = time.monotonic()

    def on_train_end(self) -> None:
        self.export()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["toy_prior"] = {"seconds": self.seconds_trained(), "loss_average": self._loss_average}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Same weights, another objective: continuing would silently mix the two.
        saved = checkpoint.get("hyper_parameters", {})
        for key, default in (("prediction_type", "epsilon"), ("zero_terminal_snr", False), ("train_text_encoder", True),
                             ("pooled_text", False)):
            if saved.get(key, default) != self.hparams[key]:
                raise ValueError(
                    f"the checkpoint was trained with {key}={saved.get(key, default)!r}, this run asks for "
                    f"{self.hparams[key]!r}; continue it with its own settings or start over "
                    "(python -m bob.toyworld.pretrain --restart)"
                )
        state = checkpoint.get("toy_prior", {})
        self._seconds_before = state.get("seconds", 0.0)
        self._loss_average = state.get("loss_average")

    def seconds_trained(self) -> float:
        return self._seconds_before + time.monotonic() - self._started

    def export(self) -> None:
        if not self.trainer.is_global_zero:
            return
        data = stage_data(self.trainer, "ToyPriorPretraining", BroadWorldDataModule)
        facts = {
            "steps": int(self.global_step),
            "batch_size": data.batch_size,
            "pool_size": data.pool_size,
            "num_variants": data.num_variants,
            "data_seed": data.seed,
            "wall_time_minutes": round(self.seconds_trained() / 60.0, 1),
            "final_loss_ema": None if self._loss_average is None else round(self._loss_average, 4),
            "hyperparameters": {k: v for k, v in self.hparams.items() if k not in ("output_dir",)},
            "torch_threads": torch.get_num_threads(),
        }
        export_pipeline(
            self.output_dir, self.vae, self.ema_text_encoder, self.tokenizer, self.ema_unet,
            self.noise_scheduler, facts, self.hparams.vae, self.hparams.reproduce_command,
        )
        log.info("exported the toy prior (step %d) to %s", self.global_step, self.output_dir)
