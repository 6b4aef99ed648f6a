"""Fake synthetic image sets and tiny classifier configs for the classifier tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.fake_data import make_class_folders, write_image

CLASSES = ["alpha", "beta", "gamma"]


def make_synthetic_set(folder: Path, classes: list[str], per_class: int = 4, seed: int = 50_000) -> Path:
    """A finished synthetic folder as the generation stage leaves it: images + manifest.json/.jsonl."""
    lines = []
    for label, name in enumerate(classes):
        for index in range(per_class):
            file = f"images/{label}/{index:04d}.png"
            write_image(folder / file, seed + label * 1000 + index)
            lines.append(json.dumps({"file": file, "class_name": name, "key": f"{label}/{index:04d}"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = {"complete": True, "class_names": classes, "num_images": len(lines), "num_planned": len(lines)}
    (folder / "manifest.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def timm_backbone(model_name: str = "test_resnet", **init_args: Any) -> dict[str, Any]:
    return {"class_path": "TimmBackbone", "init_args": {"model_name": model_name, "pretrained": False, **init_args}}


def clip_backbone(path: Path, **init_args: Any) -> dict[str, Any]:
    return {"class_path": "CLIPBackbone", "init_args": {"model": str(path), **init_args}}


def write_classifier_config(
    tmp_path: Path,
    backbone: dict[str, Any],
    synthetic: bool = True,
    image_size: int = 32,
    model_args: dict[str, Any] | None = None,
    data_args: dict[str, Any] | None = None,
) -> Path:
    """A complete fit config on a 3-class fake dataset (2 shots, 2 val and 3 test images per class)."""
    data_root = tmp_path / "data"
    if not data_root.exists():
        make_class_folders(data_root, CLASSES, train_per_class=6, test_per_class=3)
    synthetic_folder = tmp_path / "synthetic"
    if synthetic and not synthetic_folder.exists():
        make_synthetic_set(synthetic_folder, CLASSES)
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 2,
            "default_root_dir": str(tmp_path / "run"),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "run")}},
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"monitor": "val/acc", "mode": "max", "save_top_k": 1, "filename": "best-{epoch}"},
                }
            ],
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
        },
        "model": {
            "class_path": "Classifier",
            "init_args": {
                "backbone": backbone,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 1e-4}},
                "warmup_epochs": 1,
                **(model_args or {}),
            },
        },
        "data": {
            "class_path": "RealSyntheticDataModule",
            "init_args": {
                "dataset": {"class_path": "ClassFolders", "init_args": {"root": str(data_root), "descriptor": "aircraft", "name": "toy"}},
                "synthetic": str(synthetic_folder) if synthetic else None,
                "shots": 2,
                "val_per_class": 2,
                "image_size": image_size,
                "batch_size": 8,
                "num_workers": 0,
                "split_file": str(tmp_path / "split.json"),
                **(data_args or {}),
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path

