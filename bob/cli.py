"""The LightningCLI behind `python main.py`, `python -m bob` and the `bob` console script."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

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


def main(args: list[str] | None = None, run: bool = True) -> BobCLI:
    """Run the CLI; ``args`` lets tests call it in-process."""
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
