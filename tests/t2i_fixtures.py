"""A tiny few-shot world for the LoRA fine-tuning tests: fake class folders, split, caption bank, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bob.data import ClassFolders, sample_fewshot_split
from bob.data.caption_bank import CaptionBank, CaptionRecord
from tests.fake_data import make_class_folders

CLASSES = ["boeing", "cessna", "fokker"]
BACKGROUNDS = ["grass", "clear blue sky", "hangar", "runway", "sea", "clouds"]
POSES = ["taxiing", "landing", "parked", "banking", "climbing", "side view"]

DETERMINISTIC_TRANSFORM = {
    "class_path": "torchvision.transforms.v2.Compose",
    "init_args": {
        "transforms": [
            {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": 64, "antialias": True}},
            {"class_path": "torchvision.transforms.v2.CenterCrop", "init_args": {"size": 64}},
        ]
    },
}


def make_world(root: Path, shots: int = 2, with_bank: bool = True) -> dict[str, Path]:
    """Class folders, a saved split and (optionally) a caption bank matching it."""
    data = make_class_folders(root / "data", CLASSES, train_per_class=4, test_per_class=1)
    reader = ClassFolders(data, descriptor="aircraft", name="toy")
    split = sample_fewshot_split(reader, shots=shots, seed=0, val_per_class=1)
    split_file = split.save(root / "split.json")
    paths = {"data": data, "split_file": split_file}
    if with_bank:
        records = [
            CaptionRecord(r.sample_id, r.class_name, {"background": BACKGROUNDS[i % 6], "pose": POSES[i % 6]})
            for i, r in enumerate(split.train)
        ]
        paths["bank"] = CaptionBank(records, manifest={"source": "test"}).save(root / "bank")
    return paths


def adamw(lr: float) -> dict[str, Any]:
    """The fine-tuner's ``optimizer``: AdamW at learning rate ``lr``, its other settings the paper's."""
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}}


def fit_config(
    root: Path,
    world: dict[str, Path],
    tiny_sd_path: Path,
    model: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    callbacks: list[dict[str, Any]] | None = None,
) -> Path:
    """A fit config on the tiny model and world; ``model``/``trainer``/``data`` update the defaults."""
    model_args = {
        "base_model": str(tiny_sd_path),
        "unet_rank": 4,
        "unet_alpha": 8.0,
        "text_encoder_rank": 4,
        "text_encoder_alpha": 4.0,
        "optimizer": adamw(1e-3),
        "warmup_steps": 0,
        "effective_batch_size": None,
        **(model or {}),
    }
    data_args = {
        "dataset": {
            "class_path": "ClassFolders",
            "init_args": {"root": str(world["data"]), "descriptor": "aircraft", "name": "toy"},
        },
        "shots": 2,
        "val_per_class": 1,
        "split_file": str(world["split_file"]),
        "image_size": 64,
        "batch_size": 2,
        "num_workers": 0,
        "train_transform": DETERMINISTIC_TRANSFORM,
        **({"caption_bank": str(world["bank"])} if "bank" in world else {}),
        **(data or {}),
    }
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 2,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "default_root_dir": str(root / "run"),
            "callbacks": callbacks
            if callbacks is not None
            else [{"class_path": "LoRAExport", "init_args": {"dirpath": str(root / "lora")}}],
            **(trainer or {}),
        },
        "model": {"class_path": "LoRAFineTuner", "init_args": model_args},
        "data": {"class_path": "FewShotDataModule", "init_args": data_args},
    }
    path = root / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against each other (~20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())
