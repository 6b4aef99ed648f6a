"""Generation inside another stage's run: make a synthetic set's missing images, or refresh some."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer
from tqdm import tqdm

from bob.callbacks.synthetic_writer import BackgroundWrites, set_identity, set_summary
from bob.data.errors import BobInputError
from bob.data.generation_plan import PlanItem
from bob.data.splits import FewShotSplit
from bob.data.synthetic_set import read_summary
from bob.datamodules.generation import GenerationDataModule
from bob.modules.generator import SyntheticImageGenerator

log = logging.getLogger(__name__)


def is_generation_config(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


def load_generation_config(path: str | Path) -> tuple[SyntheticImageGenerator, GenerationDataModule]:
    """The generator and generation data of a ``generate.yaml`` (its trainer section is not used)."""
    path = Path(path)
    if not path.is_file():
        raise BobInputError(f"generation config {path} does not exist; give configs/<dataset>/generate.yaml or a copy")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key in ("model", "data") if key not in raw]
    if missing:
        raise BobInputError(f"generation config {path} has no {' or '.join(missing)} section")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SyntheticImageGenerator, "model", required=True)
    parser.add_subclass_arguments(GenerationDataModule, "data", required=True)
    config = parser.parse_object({"model": raw["model"], "data": raw["data"]})
    objects = parser.instantiate_classes(config)
    return objects.model, objects.data


class OnTheFlyGeneration:
    """A synthetic set made from a generation config by the ranks of a running trainer.

    ``setup`` generates the planned images that are missing (each rank a disjoint share, the
    same files ``python main.py predict -c <config>`` writes) and returns the folder. With a
    refresh fraction, ``maybe_refresh`` (called from ``train_dataloader``) regenerates that
    fraction of the set in place every ``refresh_every_n_epochs`` epochs, with fresh seeds
    and contexts; ``setup`` asks the trainer to reload dataloaders that often. Every call is
    collective: all ranks of the trainer make it together.

    Args:
        config: path of a generation config (``configs/<dataset>/generate.yaml``); its trainer
            section is ignored, the running trainer's devices are used.
        refresh_fraction: share of the synthetic images regenerated at each refresh (0: never).
        refresh_every_n_epochs: epochs between refreshes (0: never).
    """

    def __init__(self, config: str | Path, refresh_fraction: float = 0.0, refresh_every_n_epochs: int = 0):
        if not 0.0 <= refresh_fraction <= 1.0:
            raise BobInputError(f"refresh_fraction must be in [0, 1], got {refresh_fraction}")
        if refresh_every_n_epochs < 0:
            raise BobInputError(f"refresh_every_n_epochs must be >= 0, got {refresh_every_n_epochs}")
        self.config = Path(config)
        self.refresh_fraction = refresh_fraction
        self.refresh_every_n_epochs = refresh_every_n_epochs
        self.generator, self.datamodule = load_generation_config(self.config)
        self.generator.bind_paths(self.datamodule.path_values())
        self.generator.check_available()

    @property
    def refreshing(self) -> bool:
        return self.refresh_fraction > 0 and self.refresh_every_n_epochs > 0

    @property
    def folder(self) -> Path:
        return self.datamodule.output_dir

    def _generate_share(self, trainer: Trainer, items: list[PlanItem], description: str) -> int:
        share = items[trainer.global_rank :: trainer.world_size]
        if not share:
            return 0
        if self.generator.generation_pipeline is None:
            self.generator.load(trainer.strategy.root_device)
        size = self.datamodule.batch_size
        extra = self.generator.line_fields()
        writes = BackgroundWrites(threads=2)
        try:
            with tqdm(total=len(share), desc=description, unit="img", disable=not trainer.is_global_zero) as bar:
                for start in range(0, len(share), size):
                    batch = share[start : start + size]
                    images = self.generator.generate([i.prompt for i in batch], [i.seed for i in batch])
                    for item, image in zip(batch, images, strict=True):
                        writes.submit(self.datamodule.folder.write, item, image, extra)
                    bar.update(len(batch))
            writes.wait()
        finally:
            writes.close()
        return len(share)

    def _run(self, trainer: Trainer, items: list[PlanItem], description: str, summary: dict[str, Any]) -> None:
        folder = self.datamodule.folder
        trainer.strategy.barrier("on_the_fly_check")
        if trainer.is_global_zero:
            folder.start(set_identity(self.generator, self.datamodule), set_summary(self.generator, self.datamodule))
        trainer.strategy.barrier("on_the_fly_start")
        count = self._generate_share(trainer, items, description)
        log.info("rank %d generated %d image(s) for %s", trainer.global_rank, count, self.folder)
        trainer.strategy.barrier("on_the_fly_written")
        if trainer.is_global_zero:
            plan = self.datamodule.plan
            folder.finish([i.key for i in plan.items], {**set_summary(self.generator, self.datamodule), **summary})
        trainer.strategy.barrier("on_the_fly_finished")

    def setup(self, trainer: Trainer, train_split: FewShotSplit | None = None) -> Path:
        """Generate whatever the plan lacks; returns the (complete) folder.

        With ``train_split`` (the consuming stage's split), the generation config must plan
        for the same training shots: its LoRA and captions were made from them.
        """
        if train_split is not None:
            self.check_same_shots(train_split)
        if self.refreshing:
            reload = trainer.reload_dataloaders_every_n_epochs
            if reload not in (0, self.refresh_every_n_epochs):
                raise BobInputError(
                    f"trainer.reload_dataloaders_every_n_epochs={reload} contradicts refresh_every_n_epochs="
                    f"{self.refresh_every_n_epochs}; set only the latter"
                )
            # A refresh happens when the training dataloader is rebuilt.
            trainer.reload_dataloaders_every_n_epochs = self.refresh_every_n_epochs
        self.datamodule.folder.check_identity(set_identity(self.generator, self.datamodule))
        # Every rank must split the same list; rank 0's view of the folder decides.
        pending, complete = trainer.strategy.broadcast(
            (self.datamodule.pending_items(), (read_summary(self.folder) or {}).get("complete", False)), src=0
        )
        if pending or not complete:
            log.info("on-the-fly generation: %d of %d images to make in %s", len(pending), len(self.datamodule.plan), self.folder)
            self._run(trainer, pending, "generating synthetic images", {})
        self.release()
        return self.folder

    def check_same_shots(self, split: FewShotSplit) -> None:
        ours = sorted(r.sample_id for r in self.datamodule.split.train)
        theirs = sorted(r.sample_id for r in split.train)
        if ours != theirs:
            raise BobInputError(
                f"the generation config {self.config} plans for other training shots ({len(ours)} images, split "
                f"file {self.datamodule.split_file}) than this run uses ({len(theirs)} images); give both the same "
                "dataset, shots, seed and split_file"
            )

    def maybe_refresh(self, trainer: Trainer) -> int:
        """Refresh when the current epoch is a positive multiple of ``refresh_every_n_epochs``."""
        epoch, every = trainer.current_epoch, self.refresh_every_n_epochs
        if not self.refreshing or epoch == 0 or epoch % every:
            return 0
        return self.refresh(trainer, self.refresh_fraction, epoch // every)

    def refresh(self, trainer: Trainer, fraction: float, round: int) -> int:
        """Regenerate ``fraction`` of the set with round ``round``'s seeds; returns how many.

        A round already recorded in ``manifest.json`` is skipped, so a resumed run does not redo it.
        """
        summary = read_summary(self.folder) or {}
        done_rounds = list(summary.get("refresh_rounds", []))
        if round in done_rounds:
            return 0
        self.datamodule.folder.check_identity(set_identity(self.generator, self.datamodule))
        items = self.datamodule.plan.select_for_refresh(fraction, round)
        self._run(trainer, items, f"refreshing synthetic images (round {round})", {"refresh_rounds": done_rounds + [round]})
        self.release()
        return len(items)

    def release(self) -> None:
        """Free the diffusion model (the classifier needs the memory); the next call reloads it."""
        if self.generator.generation_pipeline is None:
            return
        self.generator.generation_pipeline = None
        self.generator.unet = self.generator.vae = self.generator.text_encoder = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def ensure_synthetic_set(config: str | Path, trainer: Trainer) -> Path:
    """Generate the missing images of a generation config's set on ``trainer``'s ranks; returns its folder."""
    return OnTheFlyGeneration(config).setup(trainer)
