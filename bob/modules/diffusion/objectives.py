"""Training objectives of the diffusion families: what the denoiser sees and what it must predict.

`DenoisingObjective` (SD 1.x / 2.x / XL): uniform DDPM timesteps, the noise or velocity target
of the model's ``prediction_type``. `FlowMatchingObjective` (SD3): rectified flow, the noisy
latent on the straight line between data and noise, the velocity ``noise - latents`` as
target, timesteps drawn as in the SD3 paper and diffusers' SD3 training examples (logit-normal
by default), weighted by diffusers' own `compute_loss_weighting_for_sd3`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

WeightingScheme = Literal["logit_normal", "mode", "uniform", "sigma_sqrt", "cosmap"]


@dataclass
class NoisedBatch:
    """One training step's denoiser input and target; ``weighting`` multiplies the squared error."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    weighting: torch.Tensor | None = None

    def loss(self, prediction: torch.Tensor) -> torch.Tensor:
        error = (prediction.float() - self.target.float()) ** 2
        if self.weighting is not None:
            error = self.weighting.float() * error
        return error.mean()


class DenoisingObjective:
    """DDPM training of a UNet: a uniform timestep, the scheduler's ``add_noise``, epsilon or v target."""

    def __init__(self, scheduler: DDPMScheduler):
        self.scheduler = scheduler

    def __call__(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> NoisedBatch:
        scheduler = self.scheduler
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator, device=latents.device
        )
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return NoisedBatch(noisy, timesteps, target)


class FlowMatchingObjective:
    """Rectified-flow training of a transformer on the schedule of its ``FlowMatchEulerDiscreteScheduler``.

    A timestep index is drawn from ``weighting_scheme``'s density (diffusers'
    `compute_density_for_timestep_sampling`; ``logit_normal`` with mean 0 and std 1 is the SD3
    paper's choice and diffusers' default), mapped through the scheduler's shifted sigmas, and
    the sample is ``sigma * noise + (1 - sigma) * latents``; the target is ``noise - latents``.
    """

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        weighting_scheme: WeightingScheme = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        mode_scale: float = 1.29,
    ):
        self.scheduler = scheduler
        self.weighting_scheme = weighting_scheme
        self.logit_mean, self.logit_std, self.mode_scale = logit_mean, logit_std, mode_scale
        # The training schedule: every train timestep and its (shifted) sigma, on the host.
        self.timesteps = scheduler.timesteps.clone().float()
        self.sigmas = scheduler.sigmas[: len(self.timesteps)].clone().float()

    def __call__(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> NoisedBatch:
        batch = latents.shape[0]
        # Schemes other than logit_normal and mode draw uniformly (and weight the loss instead).
        u = compute_density_for_timestep_sampling(
            self.weighting_scheme, batch, logit_mean=self.logit_mean, logit_std=self.logit_std, mode_scale=self.mode_scale,
            generator=_host(generator),
        )
        indices = (u * len(self.timesteps)).long().clamp(0, len(self.timesteps) - 1)
        sigmas = self.sigmas[indices].to(latents.device, latents.dtype).view(batch, *([1] * (latents.ndim - 1)))
        timesteps = self.timesteps[indices].to(latents.device)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        noisy = sigmas * noise + (1.0 - sigmas) * latents
        weighting = compute_loss_weighting_for_sd3(self.weighting_scheme, sigmas)  # ones unless sigma_sqrt / cosmap
        return NoisedBatch(noisy, timesteps, noise - latents, weighting)


def _host(generator: torch.Generator | None) -> torch.Generator | None:
    """The timestep draw happens on the host; a device generator seeds a host one from itself."""
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator, device=generator.device)))
