"""Training on real-first batches of real + synthetic images: part-wise CutMix/MixUp and the λ-weighted loss."""

from __future__ import annotations

import random

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2


class PartwiseMix(nn.Module):
    """CutMix or MixUp (chosen at random) on a fraction of batches, never across the real/synthetic border.

    Mixing a real image with a synthetic one would blur which part of the loss it belongs to,
    so each part is mixed only within itself (docs/method.md, stage 4). Targets always come back as
    probabilities (one-hot where nothing was mixed), which the loss takes directly.

    Args:
        num_classes: number of classes of the soft targets.
        prob: fraction of batches that are mixed (the paper: 0.2); 0 disables mixing.
        cutmix_alpha: Beta(alpha, alpha) parameter of CutMix's area ratio.
        mixup_alpha: Beta(alpha, alpha) parameter of MixUp's blend weight.
    """

    def __init__(self, num_classes: int, prob: float = 0.2, cutmix_alpha: float = 1.0, mixup_alpha: float = 1.0):
        super().__init__()
        if not 0 <= prob <= 1:
            raise ValueError(f"mixing probability must be in [0, 1], got {prob}")
        self.num_classes = num_classes
        self.prob = prob
        self.mix = v2.RandomChoice(
            [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes), v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)]
        )

    def forward(self, images: Tensor, labels: Tensor, num_real: int) -> tuple[Tensor, Tensor]:
        """Mix a batch whose first ``num_real`` samples are real and the rest synthetic.

        The parts are slices and the coin is Python's generator (seeded by ``seed_everything``):
        a boolean mask's size or a torch draw would be device values read back by the host, a
        wait for the GPU at every step.
        """
        targets = F.one_hot(labels, self.num_classes).to(images.dtype)
        if self.prob == 0 or random.random() >= self.prob:
            return images, targets
        images = images.clone()
        for part in (slice(0, num_real), slice(num_real, images.shape[0])):
            if part.stop - part.start > 1:
                images[part], targets[part] = self.mix(images[part], labels[part])
        return images, targets


def real_synthetic_loss(
    logits: Tensor, targets: Tensor, num_real: int, real_weight: float, label_smoothing: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """loss = λ·CE(real part) + (1−λ)·CE(synthetic part), each part averaged over its own samples,
    for a batch whose first ``num_real`` samples are real and the rest synthetic (slices, for
    the reason `PartwiseMix.forward` gives).

    When a batch holds only one part, that part's weight is renormalised to 1 (a real-only run
    trains on plain cross-entropy); a part with weight 0 never contributes a gradient, so
    λ = 1 ignores synthetic images entirely. Returns the loss and the detached part losses.
    """
    total = logits.new_zeros(())
    weight_sum = 0.0
    parts: dict[str, Tensor] = {}
    size = logits.shape[0]
    for name, part, weight in (("real", slice(0, num_real), real_weight), ("synthetic", slice(num_real, size), 1.0 - real_weight)):
        if part.start == part.stop:
            continue
        loss = F.cross_entropy(logits[part], targets[part], label_smoothing=label_smoothing)
        parts[name] = loss.detach()
        if weight > 0:
            total = total + weight * loss
            weight_sum += weight
    if weight_sum == 0:
        # Keep the graph connected so DDP's gradient reduction still sees every parameter.
        return logits.sum() * 0.0, parts
    return total / weight_sum, parts
