"""Random crops on the VAE's latent grid, from one cached posterior of each resized training image.

A transform that resizes and then crops at random (the paper's, `configs/t2i.yaml`) changes the
pixels every epoch, so a cache of one latent per image would remove the augmentation. What does
not change is the resized image: its posterior is encoded once, and each step crops a window of
``crop / f`` latents at a random offset (f, the VAE's downsampling, is 8 for Stable Diffusion).
That is a pixel crop at an offset that is a multiple of f, encoded with the image around it in
view, so it is close to, not equal to, encoding the pixel crop (measured in docs/finetuning.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torchvision import transforms as v1
from torchvision.transforms import v2

from bob.data.errors import BobInputError
from bob.modules.diffusion.caching import is_deterministic


def split_random_crop(transform: Callable | None) -> tuple[Callable | None, int]:
    """The deterministic part of a train transform that ends in a square ``RandomCrop``, and the crop size.

    Raises `BobInputError` for any other transform: a crop on the latent grid replaces exactly a
    final random crop, and nothing else random may come before it.
    """
    steps = list(transform.transforms) if isinstance(transform, (v2.Compose, v1.Compose)) else [transform]
    crop = steps[-1]
    prefix = steps[:-1]
    if not isinstance(crop, (v2.RandomCrop, v1.RandomCrop)) or not all(is_deterministic(t) for t in prefix):
        raise BobInputError(
            f"latent_crops needs a train transform of deterministic steps (Resize, ...) ending in RandomCrop; got "
            f"{transform!r}. Use latent_crops: false (the VAE then encodes every crop) or change the transform"
        )
    height, width = crop.size
    if height != width or crop.padding is not None or crop.pad_if_needed:
        raise BobInputError(
            f"latent_crops takes a square RandomCrop without padding; got size {crop.size}, padding {crop.padding}, "
            f"pad_if_needed {crop.pad_if_needed}"
        )
    return (v2.Compose(prefix) if prefix else None), height


def grid_trim(height: int, width: int, factor: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred region of a ``height x width`` image whose sides
    are multiples of ``factor``, so every latent has a whole pixel block."""
    return (height % factor) // 2, (width % factor) // 2, height - height % factor, width - width % factor


def trim_to_grid(image: torch.Tensor, factor: int, crop_size: int, name: str) -> torch.Tensor:
    """``image`` (C, H, W) centre-cropped to multiples of ``factor`` (`grid_trim`).

    Raises `BobInputError` when the image is smaller than the crop (RandomCrop would fail too).
    """
    height, width = image.shape[-2:]
    if height < crop_size or width < crop_size:
        raise BobInputError(f"{name}: {width}x{height} after resizing is smaller than the {crop_size} px random crop")
    top, left, height, width = grid_trim(height, width, factor)
    return image[..., top : top + height, left : left + width]


class LatentCropCache:
    """Posterior parameters (2C x h x w) of each resized training image, cropped at random on demand.

    Args:
        crop_size: the random crop's side in pixels (a multiple of ``factor``).
        factor: the VAE's downsampling factor.
    """

    def __init__(self, crop_size: int, factor: int):
        if crop_size % factor:
            raise BobInputError(f"the random crop ({crop_size} px) must be a multiple of the VAE's downsampling ({factor})")
        self.crop = crop_size // factor
        self.factor = factor
        self._store: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._store

    def add(self, sample_id: str, parameters: torch.Tensor) -> None:
        if parameters.shape[-1] < self.crop or parameters.shape[-2] < self.crop:
            raise ValueError(f"{sample_id}: latents {tuple(parameters.shape[-2:])} are smaller than the crop {self.crop}")
        self._store[sample_id] = parameters

    def posterior(self, sample_ids: Sequence[str], generator: torch.Generator | None = None) -> DiagonalGaussianDistribution:
        """A random ``crop x crop`` window of each sample's posterior; offsets uniform, as RandomCrop's."""
        return self.windows(sample_ids, generator)[0]

    def windows(
        self, sample_ids: Sequence[str], generator: torch.Generator | None = None
    ) -> tuple[DiagonalGaussianDistribution, list[tuple[int, int]]]:
        """`posterior`, and each window's (top, left) in pixels of the trimmed image (for SD-XL's crop conditioning).

        The offsets are drawn on the host (``generator`` if it is a CPU generator, else torch's
        default CPU generator), so nothing waits for the device.
        """
        if generator is not None and generator.device.type != "cpu":
            generator = None
        missing = [s for s in sample_ids if s not in self._store]
        if missing:
            raise KeyError(f"no cached latents for {missing[:3]}; encode the training images first")
        windows, corners = [], []
        for sample_id in sample_ids:
            parameters = self._store[sample_id]
            rows, columns = parameters.shape[-2] - self.crop + 1, parameters.shape[-1] - self.crop + 1
            top = int(torch.randint(rows, (), generator=generator))
            left = int(torch.randint(columns, (), generator=generator))
            windows.append(parameters[..., top : top + self.crop, left : left + self.crop])
            corners.append((top * self.factor, left * self.factor))
        return DiagonalGaussianDistribution(torch.stack(windows)), corners
