"""A tiny few-shot world for the generation tests: dataset, split, caption bank, LoRA and config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from bob.data import ClassFolders, sample_fewshot_split
from bob.data.caption_bank import CaptionBank, CaptionRecord
from bob.data.synthetic_set import read_manifest_lines
from tests.fake_data import make_class_folders

CLASSES = ["alpha", "beta", "gamma"]
SHOTS = 2


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread: tiny models gain nothing from more, and on a busy machine the
    threads of one process wait on each other for most of their CPU time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CrashAfterBatches(Callback):
    """Raises once ``batches`` predict batches have ended, like a run killed mid-way."""

    def __init__(self, batches: int = 1):
        self.batches = batches
        self.seen = 0

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.seen += 1
        if self.seen >= self.batches:
            raise RuntimeError("simulated crash")


def planned_lines(folder: Path) -> list[dict[str, Any]]:
    """Manifest lines without the file's size and hash: runs that batch differently may differ
    in the last grey level of a pixel, never in what was planned."""
    return [{k: v for k, v in line.items() if k not in ("bytes", "sha256")} for line in read_manifest_lines(folder)]


def make_world(root: Path, classes: list[str] = CLASSES, image_size: int = 32) -> dict[str, Path]:
    """Dataset folders (square images of ``image_size`` pixels), a saved split and a caption bank
    whose every context names its class."""
    data = make_class_folders(root / "data", classes, train_per_class=6, test_per_class=1, size=image_size)
    reader = ClassFolders(data, descriptor="aircraft", name="toy")
    split = sample_fewshot_split(reader, shots=SHOTS, seed=0, val_per_class=1)
    split_file = split.save(root / "split.json")
    records = [
        CaptionRecord(r.sample_id, r.class_name, {"background": f"{r.class_name} field {i}", "pose": f"pose {i}"})
        for i, r in enumerate(split.train)
    ]
    bank = CaptionBank(records, manifest={"source": "test"}).save(root / "bank")
    return {"data": data, "split_file": split_file, "bank": bank}


def save_tiny_lora(sd_path: Path, folder: Path, seed: int = 0) -> Path:
    """A random (non-zero) UNet + text-encoder LoRA in diffusers format for the tiny pipeline."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(sd_path, safety_checker=None, requires_safety_checker=False)
    torch.manual_seed(seed)
    pipeline.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    pipeline.text_encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    with torch.no_grad():
        for module in (pipeline.unet, pipeline.text_encoder):
            for name, parameter in module.named_parameters():
                if "lora_B" in name:  # peft starts B at zero: the adapter would change nothing
                    parameter.normal_(0.0, 0.3)
    StableDiffusionPipeline.save_lora_weights(
        folder,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.text_encoder)),
    )
    return folder


def generation_config(
    path: Path, world: dict[str, Path], sd_path: Path, output_dir: Path, lora: Path | None = None,
    model: dict[str, Any] | None = None, data: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None,
) -> Path:
    """A predict config over the tiny world; ``model``/``data``/``trainer`` override init args."""
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
            "default_root_dir": str(path.parent),
            "enable_model_summary": False, **(trainer or {}),
        },
        "model": {
            "class_path": "SyntheticImageGenerator",
            "init_args": {
                "base_model": str(sd_path), "lora": str(lora) if lora else None,
                "num_inference_steps": 3, "guidance_scale": 2.0, **(model or {}),
            },
        },
        "data": {
            "class_path": "GenerationDataModule",
            "init_args": {
                "dataset": {"class_path": "ClassFolders", "init_args": {
                    "root": str(world["data"]), "descriptor": "aircraft", "name": "toy"}},
                "output_dir": str(output_dir),
                "caption_bank": str(world["bank"]),
                "split_file": str(world["split_file"]),
                "shots": SHOTS,
                "val_per_class": 1,
                "images_per_class": 4,
                "batch_size": 3,
                **(data or {}),
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path
