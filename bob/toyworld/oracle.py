"""The class meter: a CNN trained on plentiful renders that tells which few-shot variant an image shows."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.render import Scene, render
from bob.toyworld.variants import FEWSHOT_VARIANTS


def _to_tensor(images: Iterable[Image.Image | np.ndarray]) -> torch.Tensor:
    arrays = [np.asarray(i.convert("RGB") if isinstance(i, Image.Image) else i, np.float32) / 255.0 for i in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _network(num_classes: int) -> nn.Module:
    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(3, 24), block(24, 48), block(48, 96), block(96, 96), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(96, num_classes),
    )


class ClassOracle:
    """Which few-shot class an image shows, judged by a CNN trained on many uniform-context renders.

    It measures the class fidelity of a synthetic set (does an image of class c look like c?);
    it never trains the classifiers under comparison. Its accuracy on fresh renders is in
    ``render_accuracy``.

    Args:
        num_classes: the first ``num_classes`` few-shot variants.
        renders_per_class: training renders per class (backgrounds and poses uniform).
        steps: optimizer steps at batch 64.
        seed: seed of renders and initialisation.
    """

    def __init__(self, num_classes: int = 16, renders_per_class: int = 150, steps: int = 600, seed: int = 777):
        rng = random.Random(f"class-oracle|{seed}")
        torch.manual_seed(seed)

        def scenes(count: int) -> list[Scene]:
            return [
                Scene(FEWSHOT_VARIANTS[c], rng.randrange(len(BACKGROUNDS)), rng.randrange(len(POSES)), rng.randrange(2**31))
                for c in range(num_classes) for _ in range(count)
            ]

        train = scenes(renders_per_class)
        images = _to_tensor(render(s) for s in tqdm(train, desc="class oracle: rendering", unit="img"))
        labels = torch.tensor([FEWSHOT_VARIANTS.index(s.variant) for s in train])
        self.net = _network(num_classes)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
        self.net.train()
        for _ in tqdm(range(steps), desc="class oracle: training", unit="step"):
            batch = torch.randint(len(images), (64,))
            x = images[batch]
            # Blur half the batch a little: generated images are softer than renders.
            if torch.rand(()) < 0.5:
                x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            loss = F.cross_entropy(self.net(x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        self.net.eval()
        held_out = scenes(20)
        predicted = self.predict(render(s) for s in held_out)
        self.render_accuracy = float(np.mean(predicted == np.array([FEWSHOT_VARIANTS.index(s.variant) for s in held_out])))

    @torch.no_grad()
    def predict(self, images: Iterable[Image.Image | np.ndarray]) -> np.ndarray:
        tensor = _to_tensor(images)
        return torch.cat([self.net(chunk).argmax(dim=1) for chunk in tensor.split(256)]).numpy()
