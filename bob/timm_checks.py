"""Early, named errors for timm models: an unknown name, or pretrained weights out of reach."""

from __future__ import annotations

import difflib

from bob.data.errors import BobInputError
from bob.hub import check_model_available


def check_timm_name(model_name: str, pretrained: bool) -> None:
    """Fail at config time, with close names, when timm does not know a model (or its weights tag)."""
    import timm

    architecture = model_name.split(".")[0]
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        raise BobInputError(
            f"timm has no model {model_name!r}; close names: {close or 'none'} "
            "(list them with `python -c \"import timm; print(timm.list_models('*resnet*'))\"`)"
        )
    if pretrained and "." in model_name and model_name not in timm.list_pretrained(architecture + ".*"):
        tags = timm.list_pretrained(architecture + ".*")
        close = difflib.get_close_matches(model_name, tags, n=5, cutoff=0.0)
        raise BobInputError(f"timm has no pretrained weights {model_name!r}; available for {architecture}: {close}")


def check_timm_weights_available(model_name: str) -> None:
    """Fail before building when timm's pretrained weights for ``model_name`` are not reachable
    (offline and not in the Hugging Face cache), naming the hub id to fetch."""
    import timm

    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    if pretrained_cfg is not None and pretrained_cfg.hf_hub_id:
        check_model_available(pretrained_cfg.hf_hub_id, "model.safetensors")
