"""W&B artifacts that link the stages: caption bank -> LoRA -> synthetic set -> classifier."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from bob.data.fingerprints import file_sha256

log = logging.getLogger(__name__)

StageKind = Literal["caption_bank", "lora", "synthetic_set", "classifier"]
#: The small files whose content identifies each stage's output: manifests (which fingerprint
#: the bulk: the LoRA manifest holds the weights' sha256, ``manifest.jsonl`` every image's).
IDENTIFYING_FILES: dict[str, tuple[str, ...]] = {
    "caption_bank": ("manifest.json", "records.jsonl"),
    "lora": ("manifest.json",),
    "synthetic_set": ("manifest.json", "manifest.jsonl"),
    "classifier": ("manifest.json",),
}


@dataclass(frozen=True)
class StageArtifact:
    """One stage's output folder as a W&B artifact.

    Args:
        kind: the artifact type.
        folder: the stage's output folder.
        files: files in it (or other paths) whose content identifies it.
    """

    kind: StageKind
    folder: Path
    files: tuple[str, ...]

    @property
    def name(self) -> str:
        """``<kind>-<folder name>``: the same folder gets the same name in every run that uses it
        (W&B projects are per dataset in the shipped configs)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.kind}-{self.folder.name}")

    def paths(self) -> list[Path]:
        return [path for path in (self.folder / file for file in self.files) if path.is_file()]


def stage_artifact(kind: StageKind, folder: str | Path, files: list[str] | None = None) -> StageArtifact:
    """A stage's folder, identified by its manifest files (or ``files``)."""
    return StageArtifact(kind, Path(folder), tuple(files if files is not None else IDENTIFYING_FILES[kind]))


def build_wandb_artifact(stage: StageArtifact) -> Any:
    """A ``wandb.Artifact`` of references into the stage's folder (nothing is uploaded).

    Each identifying file is a checksummed reference named by its place in the folder, so two
    runs, on any machines, that see the same content make the same artifact version: what the
    producing run logged is what the consuming run used. The metadata holds the folder and the
    sha256 of each identifying file.
    """
    import wandb

    folder = stage.folder.resolve()
    paths = [path.resolve() for path in stage.paths()]
    names = [path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name for path in paths]
    metadata = {
        "folder": folder.as_uri(),
        "sha256": {name: file_sha256(path) for name, path in zip(names, paths, strict=True)},
    }
    artifact = wandb.Artifact(stage.name, type=stage.kind, metadata=metadata)
    for name, path in zip(names, paths, strict=True):
        artifact.add_reference(path.as_uri(), name=name)
    return artifact


def online_wandb_run(trainer: Trainer) -> Any | None:
    """The W&B run of the trainer's W&B logger when it syncs online (rank 0); None otherwise."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            mode = getattr(getattr(run, "settings", None), "mode", None)
            if getattr(run, "offline", True) is False and mode not in ("offline", "dryrun", "disabled"):
                return run
    return None


def link_stage_artifacts(trainer: Trainer, inputs: list[StageArtifact], output: StageArtifact | None = None) -> bool:
    """Record which stage outputs this run used (``use_artifact``) and made (``log_artifact``).

    Only when W&B runs online: offline runs (and other loggers) keep the same facts in the
    stages' manifests, and this returns False. Inputs whose folder is missing are skipped.
    """
    run = online_wandb_run(trainer)
    if run is None:
        return False
    for stage in inputs:
        if stage.paths():
            run.use_artifact(build_wandb_artifact(stage))
    if output is not None:
        run.log_artifact(build_wandb_artifact(output))
        log.info("W&B: logged %s artifact %s", output.kind, output.name)
    return True
