"""Checkpoints that hold only trained weights: what they keep, and the check that one fits a model."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from bob.data.errors import BobInputError


def trained_weights(module: nn.Module, buffers: bool = True) -> dict[str, tuple[int, ...]]:
    """Name -> shape of what a checkpoint keeps: trainable parameters and, with ``buffers``,
    persistent buffers (e.g. batch-norm statistics). Frozen weights are reloaded from the model's
    own source. A module whose buffers are all the frozen base's passes ``buffers=False`` (SD3's
    transformer holds a fixed position table of ~0.5 GB as a persistent buffer)."""
    parameters = dict(module.named_parameters(remove_duplicate=False))
    kept = {name: tuple(p.shape) for name, p in parameters.items() if p.requires_grad}
    if buffers:
        kept.update({name: tuple(v.shape) for name, v in module.state_dict().items() if name not in parameters})
    return kept


def keep_trained_weights(checkpoint: dict[str, Any], module: nn.Module, buffers: bool = True) -> None:
    """Trim a checkpoint to what rebuilds and reloads ``module`` (for ``on_save_checkpoint``):
    its trained weights (`trained_weights`), and the hyperparameters its ``__init__`` takes."""
    keep = trained_weights(module, buffers)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
    # The CLI records every value it links into a model, also those its class does not take
    # (`path_values`, `num_classes`...); `--ckpt_path` rebuilds the module from these and would
    # fail on them. Private entries (``_class_path``) are Lightning's.
    if "hyper_parameters" in checkpoint:
        taken = inspect.signature(type(module).__init__).parameters
        checkpoint["hyper_parameters"] = {
            k: v for k, v in checkpoint["hyper_parameters"].items() if k.startswith("_") or k in taken
        }


def check_trained_weights(checkpoint: dict[str, Any], module: nn.Module, hint: str, buffers: bool = True) -> None:
    """Refuse a checkpoint whose trained weights are not exactly this model's (for ``on_load_checkpoint``).

    Loading is partial by design (``strict_loading = False``), so without this check a
    checkpoint of another configuration would load half and silently.

    Args:
        checkpoint: the checkpoint dict Lightning passes to ``on_load_checkpoint``.
        module: the model, built (``configure_model`` has run).
        hint: what probably differs, for the error message.
        buffers: whether the checkpoint keeps persistent buffers (`trained_weights`).
    """
    expected = trained_weights(module, buffers)
    found = {name: tuple(value.shape) for name, value in checkpoint["state_dict"].items()}
    differing = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if differing:
        raise BobInputError(
            f"the checkpoint's trained weights do not fit this model ({len(differing)} missing, extra or of "
            f"another shape, e.g. {differing[:3]}); {hint}"
        )
