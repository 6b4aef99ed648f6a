"""The classifier run's manifest: what trained it (split, synthetic set, settings) and what it scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bob.artifacts import link_stage_artifacts, stage_artifact
from bob.atomic import atomic_write_json
from bob.data.fingerprints import file_sha256
from bob.data.synthetic_set import MANIFEST_LINES
from bob.datamodules.surface import TrainingPoolData, stage_data
from bob.runs import run_folder
from bob.versions import package_versions

MANIFEST_FILE = "manifest.json"
_BACKBONE_SETTINGS = ("model_name", "pretrained", "finetune", "layer_decay", "model_kwargs", "prompt",
                      "lora_rank", "lora_alpha", "lora_dropout", "lora_targets")


def _fingerprint(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    return {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None}


def classifier_manifest(trainer: Any, model: Any) -> dict[str, Any]:
    """Settings, input fingerprints, training-pool counts and the test results of a finished run."""
    data = stage_data(trainer, "the classifier's manifest", TrainingPoolData)
    checkpoint = trainer.checkpoint_callback
    synthetic = data.synthetic_folder
    score = getattr(checkpoint, "best_model_score", None)
    return {
        "stage": "classifier",
        "backbone": {
            "class": type(model.backbone).__name__,
            **{k: getattr(model.backbone, k) for k in _BACKBONE_SETTINGS if hasattr(model.backbone, k)},
            **model.backbone.spec(),
        },
        "class_names": model.class_names,
        "prompt_names": model.prompt_names,
        "preprocessing": model.preprocessing(),
        "hyperparameters": {k: v for k, v in model.hparams.items() if not k.startswith("_")},
        "inputs": {
            "split_file": _fingerprint(data.split_file),
            "synthetic_manifest": _fingerprint(synthetic / MANIFEST_LINES) if synthetic else None,
        },
        "training_pool": data.pool_summary(),
        "monitor": getattr(checkpoint, "monitor", None),
        "best_score": None if score is None else float(score),
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "tested_checkpoint": trainer.ckpt_path,
        "test": {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")},
        "versions": package_versions(),
    }


def write_classifier_manifest(trainer: Any, model: Any) -> Path | None:
    """Write the manifest into the run's folder (beside ``config.yaml`` and ``checkpoints/``) and,
    when W&B is online, log the run as an artifact made from its synthetic set; rank 0 writes.

    A collective call under DDP: every rank must make it.
    """
    folder = run_folder(trainer)
    if not trainer.is_global_zero:
        return None
    manifest = classifier_manifest(trainer, model)
    path = atomic_write_json(folder / MANIFEST_FILE, manifest)
    synthetic = manifest["inputs"]["synthetic_manifest"]
    inputs = [stage_artifact("synthetic_set", Path(synthetic["path"]).parent)] if synthetic else []
    best = manifest["best_checkpoint"]
    output = stage_artifact("classifier", folder, [MANIFEST_FILE] + ([best] if best else []))
    link_stage_artifacts(trainer, inputs, output)
    return path
