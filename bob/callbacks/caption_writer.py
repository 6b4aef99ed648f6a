"""Writes caption records as they come, resumes interrupted runs, assembles the caption bank."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from bob.artifacts import link_stage_artifacts, stage_artifact
from bob.atomic import atomic_write_json
from bob.data.caption_bank import CaptionBank, CaptionBankError, CaptionRecord
from bob.data.fingerprints import file_sha256
from bob.datamodules.surface import CaptionData, stage_data
from bob.versions import package_versions

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
FAILED_DIR = "failed"
SETTINGS_FILE = "caption_settings.json"


def sample_file(sample_id: str) -> str:
    # Sample ids are paths with slashes; a digest gives one flat, safe file name per image.
    return hashlib.sha1(sample_id.encode("utf-8")).hexdigest() + ".json"


def read_entries(folder: Path) -> dict[str, dict[str, Any]]:
    entries = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        entry = json.loads(path.read_text(encoding="utf-8"))
        entries[entry["sample_id"]] = entry
    return entries


class CaptionWriter(BasePredictionWriter):
    """Writes one small JSON file per captioned image, on the rank that captioned it, and the
    caption bank (``records.jsonl`` + ``manifest.json``) on rank 0 when the run ends.

    Works with any module whose ``predict_step`` returns a list of per-image dicts with
    ``sample_id``, ``class_name`` and either ``attributes`` (attribute -> text, optionally
    ``raw`` and ``notes`` as in `CaptionRecord`) or ``error`` (why the image has no caption).
    A module may expose ``caption_settings`` (a dict) and ``attributes`` (prompt order). The
    DataModule names the images the bank must describe and leaves out those already captioned
    (`CaptionData`, as `CaptionDataModule` does).

    Resuming: images already in ``output_dir/samples/`` are skipped by a rerun; failed images
    are retried. A folder holding captions made with other ``caption_settings`` is refused.
    Captions of images outside the targets are an error, and the bank is ``complete`` only when
    every target has a caption; otherwise the manifest and the log name the failed and missing ones.

    Args:
        output_dir: the caption bank folder; ``{dataset}``, ``{sampling}`` (``5shot``,
            ``lt100``...), ``{shots}`` and ``{seed}`` are filled in from the datamodule.
    """

    def __init__(self, output_dir: str):
        super().__init__(write_interval="batch")
        self.output_dir_template = output_dir
        self.output_dir: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        datamodule = stage_data(trainer, "CaptionWriter", CaptionData)
        self.output_dir = datamodule.format_path(self.output_dir_template, "CaptionWriter output_dir")
        settings = getattr(pl_module, "caption_settings", None)
        done = trainer.strategy.broadcast(
            sorted(read_entries(self.output_dir / SAMPLES_DIR)) if trainer.is_global_zero else None, src=0
        )
        if done:
            self._check_settings(settings)  # on every rank, so that all stop together
        targets = datamodule.caption_targets
        extra = sorted(set(done) - {r.sample_id for r in targets})
        if extra:
            raise CaptionBankError(
                f"{self.output_dir} holds captions of {len(extra)} image(s) that are not training images of "
                f"this split, e.g. {extra[:3]}; it was made for another split: use another output_dir"
            )
        if done:
            datamodule.exclude_from_predict(done)
            rank_zero_info(f"{self.output_dir}: {len(done)} of {len(targets)} image(s) captioned by an earlier run are skipped")
        trainer.strategy.barrier("caption_writer_setup")
        if trainer.is_global_zero and settings is not None:
            atomic_write_json(self.output_dir / SETTINGS_FILE, settings)

    def _check_settings(self, settings: dict[str, Any] | None) -> None:
        path = self.output_dir / SETTINGS_FILE
        if settings is None or not path.is_file():
            return
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k))
            raise CaptionBankError(
                f"{self.output_dir} holds captions made with other settings ({', '.join(changed)} differ); "
                "a bank must not mix them: use a new output_dir, or delete the folder to start over"
            )

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every answer is on disk already; keeping them in memory too would only grow.
        trainer.predict_loop.return_predictions = False

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: Any, batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        for entry in prediction:
            name = sample_file(entry["sample_id"])
            if entry.get("error") is not None:
                atomic_write_json(self.output_dir / FAILED_DIR / name, entry)
                continue
            record = CaptionRecord(
                entry["sample_id"], entry["class_name"], entry["attributes"],
                entry.get("raw", {}), entry.get("notes", []),
            )
            atomic_write_json(self.output_dir / SAMPLES_DIR / name, asdict(record))
            (self.output_dir / FAILED_DIR / name).unlink(missing_ok=True)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Not on_predict_end: Lightning skips that hook when a rerun finds nothing left to
        # caption, and the bank must still be assembled then.
        if stage != "predict" or self.output_dir is None:
            return
        trainer.strategy.barrier("caption_writer_done")
        if trainer.is_global_zero:
            bank = self.assemble(trainer, pl_module)
            link_stage_artifacts(trainer, [], stage_artifact("caption_bank", self.output_dir))
            for logger in trainer.loggers:
                logger.log_metrics(
                    {
                        "predict/num_captions": len(bank),
                        "predict/num_failed": len(bank.manifest["failed"]),
                        "predict/num_missing": len(bank.manifest["missing"]),
                        **{f"predict/num_{k}": v for k, v in bank.note_counts().items()},
                    }
                )
        trainer.strategy.barrier("caption_writer_assembled")

    def assemble(self, trainer: Trainer, pl_module: LightningModule) -> CaptionBank:
        """Build and save the bank from the per-image files; log what is missing."""
        datamodule = stage_data(trainer, "CaptionWriter", CaptionData)
        records = [CaptionRecord(**entry) for entry in read_entries(self.output_dir / SAMPLES_DIR).values()]
        captioned = {r.sample_id for r in records}
        target_ids = {r.sample_id for r in datamodule.caption_targets}
        failed = {
            sample_id: entry["error"]
            for sample_id, entry in read_entries(self.output_dir / FAILED_DIR).items()
            if sample_id not in captioned and sample_id in target_ids
        }
        missing = sorted(target_ids - captioned - set(failed))
        attributes = getattr(pl_module, "attributes", None) or (list(records[0].attributes) if records else [])
        manifest = {
            "source": "captioner",
            "complete": not failed and not missing,
            "num_expected": len(target_ids),
            "failed": dict(sorted(failed.items())),
            "missing": missing,
            "captioner": getattr(pl_module, "caption_settings", None) or type(pl_module).__name__,
            "descriptor": datamodule.descriptor,
            "split": self._split_fingerprint(datamodule),
            "world_size": trainer.world_size,
            "versions": package_versions(),
        }
        bank = CaptionBank(records, attributes, manifest)
        bank.save(self.output_dir)
        if bank.complete:
            counts = ", ".join(f"{n} {kind}" for kind, n in bank.note_counts().items())
            rank_zero_info(f"caption bank {self.output_dir}: {len(bank)} images, complete" + (f" ({counts})" if counts else ""))
        else:
            problems = [f"{k}: {v}" for k, v in failed.items()] + [f"{k}: not captioned" for k in missing]
            log.warning(
                "caption bank %s is INCOMPLETE: %d image(s) have no caption:\n  %s\n"
                "rerun the same command to retry them (captioned images are skipped)",
                self.output_dir, len(problems), "\n  ".join(problems),
            )
        return bank

    @staticmethod
    def _split_fingerprint(datamodule: CaptionData) -> dict[str, Any] | None:
        split_file = datamodule.split_file
        if not split_file.is_file():
            return None
        return {
            "file": str(split_file),
            "sha256": file_sha256(split_file),
            "dataset": datamodule.dataset.name,
            "sampling": datamodule.sampling,
            "seed": datamodule.seed,
        }
