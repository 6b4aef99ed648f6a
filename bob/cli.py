"""The LightningCLI behind `python main.py`, `python -m bob` and the `bob` console script."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

import bob
import bob.callbacks  # noqa: F401  (registers short class names for YAML)
import bob.datamodules  # noqa: F401
import bob.modules  # noqa: F401


class VersionedSaveConfigCallback(SaveConfigCallback):
    """Saves the run's full config, stamped with the bob version that ran it."""

    def setup(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001
        first_time = not self.already_saved
        super().setup(trainer, pl_module, stage)
        if not (first_time and self.save_to_log_dir):
            return
        log_dir = trainer.log_dir  # a collective call: every rank must make it
        if trainer.is_global_zero and log_dir is not None:
            path = Path(log_dir) / self.config_filename
            text = path.read_text(encoding="utf-8")
            path.write_text(f"# written by bob {bob.__version__}\n{text}", encoding="utf-8")

    def save_config(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"bob_version": bob.__version__})


class BobCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` and ``data`` are chosen by ``class_path``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Values that must agree between data and model are taken from the data, never
        # written twice; a model without such an argument simply does not receive it.
        for name in ("class_names", "prompt_names", "descriptor", "num_classes", "image_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

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
    """Run the CLI; ``args`` lets tests call it in-process."""
    show_bob_logs()
    return BobCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=VersionedSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
