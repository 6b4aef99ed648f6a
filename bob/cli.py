"""The LightningCLI behind `python main.py`, `python -m bob` and the `bob` console script."""

from __future__ import annotations

import logging
import sys
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

import bob
import bob.callbacks  # noqa: F401  (registers short class names for YAML)
import bob.datamodules  # noqa: F401
import bob.modules  # noqa: F401
from bob.callbacks.prediction_writer import PredictionWriter
from bob.callbacks.progress import use_step_progress_bar
from bob.callbacks.synthetic_writer import SyntheticSetWriter
from bob.checkpoint_config import with_checkpoint_model
from bob.console import input_errors_as_one_line
from bob.data.errors import BobInputError
from bob.datamodules.surface import StageData, as_stage_data, link_data_to_model
from bob.loggers import silence_empty_notices
from bob.modules.classifier.module import Classifier
from bob.modules.diffusion.finetuner import LoRAFineTuner, accumulation_steps, upgrade_legacy_optimizer
from bob.modules.generator import SyntheticImageGenerator
from bob.runs import run_folder
from bob.shipped import with_shipped_configs


class VersionedSaveConfigCallback(SaveConfigCallback):
    """Saves the run's full config in the run's own folder, stamped with the bob version, and
    sends it to the loggers (the W&B run's config).

    The folder is `bob.runs.run_folder`, the one holding ``checkpoints/``: not
    ``trainer.log_dir``, which for W&B is the ``save_dir`` every run shares.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001
        if self.already_saved:
            return
        path = run_folder(trainer) / self.config_filename  # a collective call: every rank must make it
        if self.save_to_log_dir and not self.overwrite:
            exists = trainer.strategy.broadcast(path.is_file() if trainer.is_global_zero else False)
            if exists:
                raise BobInputError(
                    f"{path} exists and would be overwritten; give this run another folder or pass "
                    "save_config_kwargs={'overwrite': True}"
                )
        if trainer.is_global_zero:
            if self.save_to_log_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=self.multifile)
                text = path.read_text(encoding="utf-8")
                path.write_text(f"# written by bob {bob.__version__}\n{text}", encoding="utf-8")
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"bob_version": bob.__version__, **config})


class BobCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` and ``data`` are chosen by ``class_path``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Values that must agree between data and model are taken from the data, never
        # written twice; a model without such an argument simply does not receive it.
        link_data_to_model(parser)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        configured = list(configured) if isinstance(configured, list) else [configured]
        trainer = super().instantiate_trainer(**kwargs)
        use_step_progress_bar(trainer, configured)
        return trainer

    def before_instantiate_classes(self) -> None:
        # `fit --ckpt_path` with a LoRA checkpoint of the flat optimizer arguments: their values, spelled anew.
        upgrade_legacy_optimizer(self._get(self.config, "model"))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if self.subcommand in (None, "fit"):
            self.apply_effective_batch_size()
        if self.subcommand in (None, "predict"):
            self.add_synthetic_writer()
            self.add_prediction_writer()

    def add_synthetic_writer(self) -> None:
        """A generation run whose config names no `SyntheticSetWriter` gets one with its defaults."""
        writers = [c for c in self.trainer.callbacks if isinstance(c, SyntheticSetWriter)]
        if isinstance(self.model, SyntheticImageGenerator) and not writers:
            self.trainer.callbacks.append(SyntheticSetWriter())

    def add_prediction_writer(self) -> None:
        """A classifier's predict run whose config names no `PredictionWriter` gets one with its
        defaults (top 5, ``predictions.csv`` in the run's folder)."""
        writers = [c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)]
        if isinstance(self.model, Classifier) and not writers:
            self.trainer.callbacks.append(PredictionWriter())

    def apply_effective_batch_size(self) -> None:
        """Set ``trainer.accumulate_grad_batches`` from a LoRA fine-tuner's ``effective_batch_size``, and log it.

        The one trainer setting bob derives: ``effective / (data.batch_size x devices x nodes)``
        micro-batches per optimizer step, so the recipe does not depend on the GPU count. An
        explicit ``trainer.accumulate_grad_batches`` that disagrees is an error; the module
        checks the value again in ``setup`` and changes nothing itself.
        """
        effective = self.model.hparams.effective_batch_size if isinstance(self.model, LoRAFineTuner) else None
        if effective is None:
            return
        data = as_stage_data(self.datamodule, "model.effective_batch_size", StageData)
        world = self.trainer.num_devices * self.trainer.num_nodes
        steps = accumulation_steps(effective, data.batch_size, world)
        configured = self.trainer.accumulate_grad_batches
        if configured not in (1, steps):
            raise BobInputError(
                f"trainer.accumulate_grad_batches={configured} contradicts model.effective_batch_size={effective} "
                f"(which needs {steps}); set one of them only"
            )
        self.trainer.accumulate_grad_batches = steps
        rank_zero_info(
            f"effective batch {effective} = {data.batch_size} per device x {world} device(s) x {steps} "
            f"accumulation step(s): trainer.accumulate_grad_batches set to {steps}"
        )

    def after_fit(self) -> None:
        """Test the best-validation checkpoint when the model asks for it (``test_after_fit``)."""
        if not getattr(self.model, "test_after_fit", False) or self.trainer.interrupted:
            return
        if not is_overridden("test_dataloader", self.datamodule, LightningDataModule):
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        if not best:
            rank_zero_warn(
                "no best-validation checkpoint to test (no validation ran, or no ModelCheckpoint "
                "monitors val/acc); testing the weights of the last step"
            )
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def show_bob_logs() -> None:
    """Print bob's own INFO messages (split files written, banks read...) next to Lightning's."""
    logger = logging.getLogger("bob")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s bob: %(message)s"))
        # Under DDP every rank runs the same code: info once, warnings from whichever rank sees them.
        handler.addFilter(lambda record: record.levelno >= logging.WARNING or rank_zero_only.rank == 0)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(args: list[str] | None = None, run: bool = True) -> BobCLI:
    """Run the CLI; ``args`` lets tests call it in-process. Input errors raise `BobInputError`.

    ``-c configs/...`` files missing from the working directory are read from the configs
    shipped inside the package, so the documented commands work wherever bob is installed.
    ``predict``, ``test`` and ``validate`` with ``--ckpt_path`` and no model take the model from
    the checkpoint (`bob.checkpoint_config`).
    """
    show_bob_logs()
    silence_empty_notices()
    release_finished_runs()
    if args is None:
        # In place: DDP starts the other ranks by re-running sys.argv.
        sys.argv[1:] = with_checkpoint_model(with_shipped_configs(sys.argv[1:]))
    else:
        args = with_checkpoint_model(with_shipped_configs(list(args)))
    return BobCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=VersionedSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        # Each bob module builds its own optimizer; LightningCLI's --optimizer/--lr_scheduler
        # would replace it with one over no parameters.
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def release_finished_runs() -> None:
    """Let the trainer, data and model of earlier in-process runs go.

    jsonargparse keeps class parsers in a module-level cache keyed by, among others, the
    LightningCLI's instantiators, and the last subcommand parser in a context variable; both
    hold the previous CLI, so every in-process ``main([...])`` (the toy-world pipeline runs ten
    in one process, the science command ten per seed) would keep its models alive to the end.
    Both are private to jsonargparse: a version without them has nothing to release here.
    """
    from jsonargparse import _typehints

    cache = getattr(_typehints, "_cached_class_parsers", None)
    if cache is not None:
        cache.clear()
    last_parser = getattr(_typehints, "subclass_arg_parser", None)
    if last_parser is not None:
        last_parser.set(None)


def run() -> None:
    """The console entry point (`python main.py`, `python -m bob`, `bob`): an input error is one
    line, ``error: <message>``, and exit status 2 (``BOB_DEBUG=1`` shows the traceback)."""
    with input_errors_as_one_line():
        main()
