"""Generation inside the classifier's run: a callback that makes a synthetic set's missing images and refreshes some."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, LightningModule, Trainer
from tqdm import tqdm

from bob.callbacks.synthetic_writer import BackgroundWrites, set_identity, set_summary
from bob.data.errors import BobInputError
from bob.data.generation_plan import PlanItem
from bob.data.splits import FewShotSplit
from bob.data.synthetic_set import read_summary
from bob.datamodules.generation import GenerationDataModule
from bob.datamodules.surface import TrainingPoolData, link_data_to_model, stage_data
from bob.modules.generator import SyntheticImageGenerator

log = logging.getLogger(__name__)


def load_generation_config(path: str | Path) -> tuple[SyntheticImageGenerator, GenerationDataModule]:
    """The generator and generation data of a generation config, linked as the CLI links them.

    Only the ``model`` and ``data`` sections are read; the running trainer replaces the config's own.
    """
    path = Path(path)
    if not path.is_file():
        raise BobInputError(
            f"generation config {path} does not exist; save a composed one with `python main.py predict "
            "-c configs/generate.yaml -c configs/datasets/<dataset>.yaml --print_config > generate.yaml`"
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key in ("model", "data") if key not in raw]
    if missing:
        raise BobInputError(f"generation config {path} has no {' or '.join(missing)} section")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SyntheticImageGenerator, "model", required=True)
    parser.add_subclass_arguments(GenerationDataModule, "data", required=True)
    link_data_to_model(parser)
    objects = parser.instantiate_classes(parser.parse_object({"model": raw["model"], "data": raw["data"]}))
    return objects.model, objects.data


class OnTheFlyGeneration(Callback):
    """Makes the training run's synthetic set from a generation config, on the run's own devices.

    In ``setup`` of ``fit`` every rank generates its share of the planned images that are
    missing (the same files ``python main.py predict -c <config>`` writes), then the diffusion
    model is freed; this happens before the classifier's weights are built, so the two models
    never share the device. The DataModule is then given the set's folder
    (`TrainingPoolData.use_synthetic_folder`) and lists it when it builds the training
    dataloader. With a refresh fraction, at the start of every ``refresh_every_n_epochs``-th
    epoch that share of the set is regenerated in place, with fresh seeds and contexts; the
    dataloader reads the new files, so nothing has to be reloaded. Every step is collective:
    all ranks of the trainer make it together.

    Args:
        config: a generation config (a composed one saved with ``--print_config``); its model
            and data sections are used, its trainer section is ignored. It must plan for the
            same training shots as this run.
        refresh_fraction: share of the synthetic images regenerated at each refresh (0: never).
        refresh_every_n_epochs: epochs between refreshes (0: never).
    """

    def __init__(self, config: str, refresh_fraction: float = 0.0, refresh_every_n_epochs: int = 0):
        if not 0.0 <= refresh_fraction <= 1.0:
            raise BobInputError(f"refresh_fraction must be in [0, 1], got {refresh_fraction}")
        if refresh_every_n_epochs < 0:
            raise BobInputError(f"refresh_every_n_epochs must be >= 0, got {refresh_every_n_epochs}")
        self.config = Path(config)
        self.refresh_fraction = refresh_fraction
        self.refresh_every_n_epochs = refresh_every_n_epochs
        self.generator, self.data = load_generation_config(self.config)

    @property
    def refreshing(self) -> bool:
        return self.refresh_fraction > 0 and self.refresh_every_n_epochs > 0

    @property
    def folder(self) -> Path:
        return self.data.output_dir

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        pool = stage_data(trainer, "OnTheFlyGeneration", TrainingPoolData)
        self.check_same_shots(pool.split)
        pool.use_synthetic_folder(self.folder)
        self.make_missing(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.maybe_refresh(trainer)

    # ----------------------------------------------------------------- steps
    def check_same_shots(self, split: FewShotSplit) -> None:
        """The generation config must plan for ``split``'s training shots: its LoRA and captions were made from them."""
        ours = sorted(r.sample_id for r in self.data.split.train)
        theirs = sorted(r.sample_id for r in split.train)
        if ours != theirs:
            raise BobInputError(
                f"the generation config {self.config} plans for other training shots ({len(ours)} images, split "
                f"file {self.data.split_file}) than this run uses ({len(theirs)} images); give both the same "
                "dataset, shots, seed and split_file"
            )

    def make_missing(self, trainer: Trainer) -> Path:
        """Generate whatever the plan lacks, each rank its share; returns the (complete) folder."""
        self.generator.check_available()
        self.data.folder.check_identity(set_identity(self.generator, self.data))
        if trainer.is_global_zero:
            self.data.folder.recheck()  # a damaged image counts as missing
        # Every rank must split the same list; rank 0's view of the folder decides.
        pending, complete = trainer.strategy.broadcast(
            (self.data.pending_items(), (read_summary(self.folder) or {}).get("complete", False)), src=0
        )
        if pending or not complete:
            log.info("on-the-fly generation: %d of %d images to make in %s", len(pending), len(self.data.plan), self.folder)
            self._run(trainer, pending, "generating synthetic images", {})
        self.generator.unload()
        return self.folder

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
        self.data.folder.check_identity(set_identity(self.generator, self.data))
        items = self.data.plan.select_for_refresh(fraction, round)
        self._run(trainer, items, f"refreshing synthetic images (round {round})", {"refresh_rounds": done_rounds + [round]})
        self.generator.unload()
        return len(items)

    def _run(self, trainer: Trainer, items: list[PlanItem], description: str, summary: dict[str, Any]) -> None:
        folder = self.data.folder
        trainer.strategy.barrier("on_the_fly_check")
        if trainer.is_global_zero:
            folder.start(set_identity(self.generator, self.data), set_summary(self.generator, self.data))
        trainer.strategy.barrier("on_the_fly_start")
        count = self._generate_share(trainer, items, description)
        log.info("rank %d generated %d image(s) for %s", trainer.global_rank, count, self.folder)
        trainer.strategy.barrier("on_the_fly_written")
        if trainer.is_global_zero:
            planned = [i.key for i in self.data.plan.items]
            folder.finish(planned, {**set_summary(self.generator, self.data), **summary})
        trainer.strategy.barrier("on_the_fly_finished")

    def _generate_share(self, trainer: Trainer, items: list[PlanItem], description: str) -> int:
        share = items[trainer.global_rank :: trainer.world_size]
        if not share:
            return 0
        if self.generator.generation_pipeline is None:
            self.generator.load(trainer.strategy.root_device)
        size = self.data.batch_size
        extra = self.generator.line_fields()
        writes = BackgroundWrites(threads=2)
        try:
            with tqdm(total=len(share), desc=description, unit="img", disable=not trainer.is_global_zero) as bar:
                for start in range(0, len(share), size):
                    items, images = self.generator.generate_items(share[start : start + size], self.data.plan)
                    for item, image in zip(items, images, strict=True):
                        writes.submit(self.data.folder.write, item, image, extra)
                    bar.update(len(items))
            writes.wait()
        finally:
            writes.close()
        return len(share)


def ensure_synthetic_set(config: str | Path, trainer: Trainer) -> Path:
    """Generate the missing images of a generation config's set on ``trainer``'s ranks; returns its folder."""
    return OnTheFlyGeneration(str(config)).make_missing(trainer)
