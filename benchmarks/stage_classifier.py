"""Stage 4 timed: bob's `Classifier` on real + synthetic batches against a plain PyTorch training loop."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import Settings, dataset_section, run_stage, trainer_section
from benchmarks.timing import Clock, Run
from benchmarks.world import World
from bob.datamodules.real_synthetic import paper_train_transform

REAL_REPEATS = 2
REAL_WEIGHT = 0.8
WARMUP = 2


class LabelledImages(Dataset):
    """(path, label, is_synthetic) triples to augmented float tensors."""

    def __init__(self, items: list[tuple[Path, int, bool]], size: int):
        self.items = items
        # The reference augments exactly as bob does: the comparison is about the loop, not the data.
        self.transform = paper_train_transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        from PIL import Image
        from torchvision.transforms import v2

        path, label, synthetic = self.items[index]
        with Image.open(path) as image:
            pixels = v2.functional.pil_to_tensor(image.convert("RGB"))
        return self.transform(pixels).float() / 255, label, synthetic


def training_items(world: World) -> list[tuple[Path, int, bool]]:
    label = {name: i for i, name in enumerate(world.class_names)}
    real = [(item.path, item.label, False) for item in world.train] * REAL_REPEATS
    lines = (world.synthetic / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    synthetic = [(world.synthetic / e["file"], label[e["class_name"]], True) for e in map(json.loads, lines)]
    return real + synthetic


def reference(world: World, settings: Settings) -> Run:
    """timm model, AdamW, cosine schedule, λ·CE(real) + (1−λ)·CE(synthetic), fp32."""
    import timm

    device = torch.device(settings.device)
    model = timm.create_model(world.size.classifier, pretrained=False, num_classes=len(world.class_names)).to(device)
    mean = torch.tensor(model.pretrained_cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"], device=device).view(1, 3, 1, 1)
    total = WARMUP + settings.steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    loader = DataLoader(
        LabelledImages(training_items(world), world.size.classifier_image_size), batch_size=settings.classifier_batch,
        shuffle=True, drop_last=True, num_workers=settings.num_workers, persistent_workers=settings.num_workers > 0,
    )
    model.train()
    clock = Clock(settings.device)
    step = 0
    while step < total:
        for images, labels, synthetic in loader:
            images, labels, synthetic = images.to(device), labels.to(device), synthetic.to(device)
            logits = model((images - mean) / std)
            parts = [(w, m) for w, m in ((REAL_WEIGHT, ~synthetic), (1 - REAL_WEIGHT, synthetic)) if m.any()]
            loss = sum(w * F.cross_entropy(logits[m], labels[m]) for w, m in parts) / sum(w for w, _ in parts)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            clock.mark(len(labels))
            step += 1
            if step == total:
                break
    return clock.run(WARMUP)


def ours_config(world: World, settings: Settings, run_dir: Path, precision: str) -> dict[str, Any]:
    """`configs/classifier.yaml` with the ResNet-50 backbone file merged, on the benchmark's data."""
    return {
        "seed_everything": 0,
        "trainer": trainer_section(
            settings, run_dir, precision=precision, max_steps=WARMUP + settings.steps, limit_val_batches=0,
            num_sanity_val_steps=0,
        ),
        "model": {
            "class_path": "Classifier",
            "init_args": {
                "backbone": {
                    "class_path": "TimmBackbone",
                    "init_args": {"model_name": world.size.classifier, "pretrained": False, "finetune": "full"},
                },
                "real_weight": REAL_WEIGHT,
                "mix_prob": 0.0,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-4, "weight_decay": 1e-4}},
                "warmup_epochs": 0,
                "test_after_fit": False,
            },
        },
        "data": {
            "class_path": "RealSyntheticDataModule",
            "init_args": {
                "dataset": dataset_section(world), "synthetic": str(world.synthetic), "real_repeats": REAL_REPEATS,
                "shots": world.shots, "seed": 0, "split_file": str(world.split_file), "val_per_class": 1,
                "image_size": world.size.classifier_image_size, "batch_size": settings.classifier_batch,
                "num_workers": settings.num_workers,
            },
        },
    }


def ours(world: World, settings: Settings, run_dir: Path, precision: str) -> Run:
    return run_stage("fit", ours_config(world, settings, run_dir, precision), run_dir).clock.run(WARMUP)


def variants(world: World, settings: Settings, work: Path) -> dict[str, tuple[str, bool, Any]]:
    """name -> (description, is the reference, callable returning a `Run`)."""
    name = world.size.classifier
    found = {
        "reference": (f"plain PyTorch loop, timm {name}, fp32", True, lambda: reference(world, settings)),
        "bob_same": (f"bob, timm {name}, fp32", False, lambda: ours(world, settings, work / "same", "32-true")),
    }
    if settings.default_precision != "32-true":
        found["bob_default"] = (
            f"bob, timm {name}, {settings.default_precision}", False,
            lambda: ours(world, settings, work / "default", settings.default_precision),
        )
    return found
