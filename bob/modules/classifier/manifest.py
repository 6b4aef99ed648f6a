"""The classifier run's manifest: what trained it (split, synthetic set, settings) and what it scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bob.atomic import atomic_write_json
from bob.data.fingerprints import file_sha256
from bob.data.synthetic_set import MANIFEST_LINES
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
    data = trainer.datamodule
    checkpoint = trainer.checkpoint_callback
    synthetic = getattr(data, "synthetic_folder", None)
    score = getattr(checkpoint, "best_model_score", None)
    return {
        "stage": "classifier",
        "backbone": {
            "class": type(model.backbone).__name__,
            **{k: getattr(model.backbone, k) for k in _BACKBONE_SETTINGS if hasattr(model.backbone, k)},
        },
        "hyperparameters": dict(model.hparams),
        "inputs": {
            "split_file": _fingerprint(Path(data.split_file)) if hasattr(data, "split_file") else None,
            "synthetic_manifest": _fingerprint(Path(synthetic) / MANIFEST_LINES) if synthetic else None,
        },
        "training_pool": data.pool_summary() if hasattr(data, "pool_summary") else {},
        "monitor": getattr(checkpoint, "monitor", None),
        "best_score": None if score is None else float(score),
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "tested_checkpoint": trainer.ckpt_path,
        "test": {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")},
        "versions": package_versions(),
    }


def write_classifier_manifest(trainer: Any, model: Any) -> Path | None:
    """Write the manifest beside the checkpoints (or into the log folder); rank 0 only."""
    checkpoint = trainer.checkpoint_callback
    folder = getattr(checkpoint, "dirpath", None) or trainer.log_dir
    if not trainer.is_global_zero or folder is None:
        return None
    return atomic_write_json(Path(folder) / MANIFEST_FILE, classifier_manifest(trainer, model))
