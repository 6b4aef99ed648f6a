"""Fail fast when a model id cannot be loaded offline, instead of minutes of hub retries."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from bob.data.errors import BobInputError


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def check_model_available(name_or_path: str, probe_file: str) -> None:
    """Raise a clear error if ``name_or_path`` is neither a local folder nor (when offline) cached.

    Args:
        name_or_path: a hub model id or a local folder.
        probe_file: a file every copy of the model has (``model_index.json`` for a diffusers
            pipeline, ``config.json`` for a transformers model), looked up in the local cache.
    """
    if Path(name_or_path).expanduser().exists():
        if not (Path(name_or_path).expanduser() / probe_file).exists():
            raise BobInputError(f"{name_or_path} is a folder but has no {probe_file}; is it a saved model?")
        return
    if hub_offline() and not isinstance(try_to_load_from_cache(name_or_path, probe_file), str):
        raise BobInputError(
            f"model {name_or_path!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it on a machine with internet (`huggingface-cli download "
            f"{name_or_path}`) or pass the path of a local copy"
        )
