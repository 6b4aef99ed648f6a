"""The separable Gaussian blur against torchvision's: same kernel, same random sigma, same output up to rounding."""

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from bob.data.separable_blur import SeparableGaussianBlur, separable_gaussian_blur
from bob.datamodules.real_synthetic import paper_train_transform


@pytest.mark.parametrize("sigma", [0.1, 0.8, 2.0])
def test_uint8_blur_matches_torchvision_within_one_grey_level(sigma):
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = v2.functional.gaussian_blur(image, [23, 23], [sigma, sigma])
    ours = separable_gaussian_blur(image, [23, 23], [sigma, sigma])
    assert ours.dtype == torch.uint8 and ours.shape == image.shape
    difference = (reference.int() - ours.int()).abs()
    assert difference.max() <= 1
    assert (difference > 0).float().mean() < 1e-3
    # And it is a blur: the noise image loses contrast with sigma.
    if sigma >= 0.8:
        assert ours.float().std() < 0.8 * image.float().std()


def test_float_batches_and_unequal_kernels_match_torchvision():
    images = torch.rand(2, 3, 30, 31, generator=torch.Generator().manual_seed(1))
    reference = v2.functional.gaussian_blur(images, [7, 11], [1.3, 0.6])
    assert torch.allclose(separable_gaussian_blur(images, [7, 11], [1.3, 0.6]), reference, atol=1e-5)


def test_transform_draws_the_same_sigma_and_keeps_the_image_type():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    torch.manual_seed(3)
    reference = v2.GaussianBlur(23, sigma=(0.1, 2.0))(image)
    torch.manual_seed(3)
    ours = SeparableGaussianBlur(23, sigma=(0.1, 2.0))(image)
    assert isinstance(ours, tv_tensors.Image)
    assert (reference.int() - ours.int()).abs().max() <= 1


def test_paper_augmentation_uses_the_separable_blur():
    blurs = [t.transforms[0] for t in paper_train_transform().transforms if isinstance(t, v2.RandomApply)]
    assert any(isinstance(b, SeparableGaussianBlur) and list(b.kernel_size) == [23, 23] for b in blurs)
