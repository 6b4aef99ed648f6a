"""Writes the trained LoRA adapter (diffusers format) and its manifest when fit ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from bob.artifacts import link_stage_artifacts, stage_artifact
from bob.atomic import atomic_write_json
from bob.data.caption_bank import RECORDS_FILE
from bob.data.fingerprints import file_sha256
from bob.datamodules.surface import StageData, stage_data
from bob.modules.diffusion.lora import LORA_MANIFEST_FILE, LORA_WEIGHTS_FILE
from bob.runs import run_folder
from bob.versions import package_versions


def _fingerprint(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


def data_provenance(datamodule: StageData) -> dict[str, Any]:
    """Which real images and captions the adapter was trained on, with file fingerprints."""
    split, split_file = datamodule.split, datamodule.split_file
    provenance: dict[str, Any] = {
        "datamodule": type(datamodule).__name__,
        "split_file": str(split_file), "split_sha256": _fingerprint(split_file),
        "dataset": split.dataset, "sampling": datamodule.sampling, "shots": split.shots,
        "seed": split.seed, "num_train_images": len(split.train),
    }
    bank_path = datamodule.caption_bank_path
    if bank_path is not None:
        provenance.update(caption_bank=str(bank_path), caption_bank_sha256=_fingerprint(Path(bank_path) / RECORDS_FILE))
    return provenance


def _text_encoder_names(pl_module: LightningModule) -> list[str]:
    return ["text_encoder"] + (["text_encoder_2"] if getattr(pl_module, "text_encoder_2", None) is not None else [])


class LoRAExport(Callback):
    """Writes ``pytorch_lora_weights.safetensors`` and ``manifest.json`` at the end of fit.

    The folder loads with ``StableDiffusionPipeline.load_lora_weights(folder)`` on a fresh
    pipeline of the base model, and is what the generation stage is pointed at. Both files are
    written atomically; the manifest last, holding the weights' sha256, so a folder whose
    manifest matches its weights is complete.

    Args:
        dirpath: output folder; ``{dataset}``, ``{sampling}`` (``5shot``, ``lt100``...),
            ``{shots}`` and ``{seed}`` are filled in from the data module. None writes ``lora/``
            in the run's folder (beside ``checkpoints/``).
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self._folder: Path | None = None
        self._started = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module, "save_lora"):
            raise TypeError(f"LoRAExport needs a LoRA fine-tuning module, got {type(pl_module).__name__}")
        run = run_folder(trainer)  # collective under DDP: every rank calls it
        self._folder = self.resolve(stage_data(trainer, "LoRAExport")) if self.dirpath is not None else run / "lora"
        self._started = time.time()

    def resolve(self, datamodule: StageData) -> Path:
        return datamodule.format_path(self.dirpath, "LoRAExport dirpath")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.export(trainer, pl_module)
        trainer.strategy.barrier("lora_export")

    def export(self, trainer: Trainer, pl_module: LightningModule) -> Path:
        folder = self._folder
        folder.mkdir(parents=True, exist_ok=True)
        # A stale manifest must not vouch for the new weights while they are replaced.
        (folder / LORA_MANIFEST_FILE).unlink(missing_ok=True)
        pl_module.save_lora(str(folder))
        hp = dict(pl_module.hparams)
        data = stage_data(trainer, "LoRAExport")
        manifest = {
            "kind": "bob.lora",
            "weights_file": LORA_WEIGHTS_FILE,
            "weights_sha256": file_sha256(folder / LORA_WEIGHTS_FILE),
            "base_model": hp["base_model"],
            "revision": hp["revision"],
            "prompt_mode": pl_module.prompt_mode,
            "template": pl_module.template.template,
            "prompt_fit": pl_module.prompt_fit_summary(data),
            "descriptor": pl_module.template.descriptor,
            "prompt_names": pl_module.prompt_names,
            "class_names": pl_module.class_names,
            "image_size": pl_module.image_size,
            "lora": {
                # "unet", or "transformer" for SD3; its rank and alpha are the unet_* settings.
                pl_module.parts.denoiser_name: {
                    "rank": hp["unet_rank"], "alpha": hp["unet_alpha"],
                    "targets": pl_module.matched_targets[pl_module.parts.denoiser_name],
                },
                # One entry per text encoder of the model (SD-XL has a second).
                **{
                    name: (
                        {"rank": hp["text_encoder_rank"], "alpha": hp["text_encoder_alpha"],
                         "targets": pl_module.matched_targets[name]}
                        if hp["train_text_encoder"] else None
                    )
                    for name in _text_encoder_names(pl_module)
                },
                "init": hp["lora_init"],
            },
            "training": {
                "global_step": trainer.global_step,
                "epochs_completed": trainer.current_epoch,
                "max_epochs": trainer.max_epochs,
                "world_size": trainer.world_size,
                "per_device_batch_size": data.batch_size,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "effective_batch_size": hp["effective_batch_size"],
                "precision": str(trainer.precision),
                "interrupted": trainer.interrupted,
                "final_loss": _metric(trainer, "train/loss_epoch"),
                "seconds": round(time.time() - self._started, 1),
            },
            "data": data_provenance(data),
            "hyperparameters": {
                k: v for k, v in pl_module.init_arguments().items() if k not in ("prompt_names", "class_names")
            },
            "versions": package_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(folder / LORA_MANIFEST_FILE, manifest)
        rank_zero_info(f"wrote LoRA adapter {folder / LORA_WEIGHTS_FILE} (step {trainer.global_step})")
        bank = data.caption_bank_path
        link_stage_artifacts(trainer, [stage_artifact("caption_bank", bank)] if bank else [], stage_artifact("lora", folder))
        return folder


def _metric(trainer: Trainer, name: str) -> float | None:
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)
