"""A run's config resolved exactly as `python main.py ...` resolves it, with nothing instantiated."""

from __future__ import annotations

import logging
import warnings
from typing import Any
from unittest import mock

import bob.cli


class _Parsed(Exception):
    """Carries the parsed config out of the CLI before it builds anything."""

    def __init__(self, config: Any):
        super().__init__("config parsed")
        self.config = config


class _ParseOnlyCLI(bob.cli.BobCLI):
    """`BobCLI` that stops after parsing: no dataset is read, no model or trainer is built."""

    def before_instantiate_classes(self) -> None:
        raise _Parsed(self.config)


def resolve_run_config(args: list[str]) -> tuple[str, dict[str, Any]]:
    """The subcommand and its resolved config (every default filled in) for CLI ``args``.

    Args:
        args: what would follow ``python main.py``: a subcommand, ``-c`` config files and
            ``--key=value`` overrides, e.g. ``["fit", "-c", "configs/t2i.yaml", "-c", "configs/datasets/aircraft.yaml"]``.

    Returns:
        (``fit``/``predict``/..., the subcommand's config as nested dicts and lists).
    """
    # bob.cli.main is the one place that knows how the CLI is built (class, parser options,
    # defaults); running it with a parse-only subclass in its place resolves the config the
    # way a run would, including whatever main() adds later.
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(
        logging.WARNING
    )  # "Seed set to 0": the CLI seeds before it instantiates; nothing is run here
    with mock.patch.object(bob.cli, "BobCLI", _ParseOnlyCLI), warnings.catch_warnings():
        # main() is given the arguments explicitly while sys.argv also holds them.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            bob.cli.main(list(args))
        except _Parsed as parsed:
            config = parsed.config
        else:  # pragma: no cover - the parse-only CLI always raises or exits
            raise RuntimeError("bob.cli.main returned without parsing a config")
        finally:
            seed_log.setLevel(level)
    subcommand = config["subcommand"]
    return subcommand, config[subcommand].as_dict()
