"""``predict``/``test``/``validate`` given a checkpoint but no model: the model's config read back from it."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from bob.modules.class_specs import import_class

SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Subcommands whose model may come from ``--ckpt_path`` alone.
FROM_CHECKPOINT = ("validate", "test", "predict")


def option_value(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args`` (the last one given)."""
    value = None
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and index + 1 < len(args):
            value = args[index + 1]
    return value


def checkpoint_model_config(path: str | Path) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of the module a checkpoint holds, from its hyperparameters;
    None when it does not say its class (Lightning's ``_class_path``, which bob's classifier
    checkpoints always carry) or cannot be read without running pickled code."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError):
        return None
    hparams = checkpoint.get("hyper_parameters") or {}
    if not hparams.get("_class_path"):
        return None
    cls = import_class(hparams["_class_path"], LightningModule, f"checkpoint {path}")
    accepted = inspect.signature(cls.__init__).parameters
    return {"class_path": hparams["_class_path"], "init_args": {k: v for k, v in hparams.items() if k in accepted}}


def with_checkpoint_model(args: list[str]) -> list[str]:
    """``args`` with ``--model=<the checkpoint's model>`` right after the subcommand, when a
    ``predict``/``test``/``validate`` command gives ``--ckpt_path`` and no ``--model``.

    Placed first, the checkpoint's model is a default: a config file or option given after it
    still changes it.
    """
    position = next((i for i, arg in enumerate(args) if arg in SUBCOMMANDS), None)
    if position is None or args[position] not in FROM_CHECKPOINT:
        return args
    rest = args[position + 1 :]
    if any(arg == "--model" or arg.startswith("--model=") for arg in rest):
        return args
    checkpoint = option_value(rest, "--ckpt_path")
    if not checkpoint or not Path(checkpoint).is_file():
        return args
    model = checkpoint_model_config(checkpoint)
    if model is None:
        return args
    return [*args[: position + 1], f"--model={json.dumps(model)}", *rest]
