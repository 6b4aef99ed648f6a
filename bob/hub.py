"""Fail fast when a model id cannot be loaded offline, instead of minutes of hub retries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache

from bob.data.errors import BobInputError
from bob.withdrawn_models import check_not_withdrawn


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def torch_hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub`` (and so torch-fidelity and timm) keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


#: Per component subfolder, the files it must hold: each entry a tuple of alternatives (glob patterns).
Components = Mapping[str, tuple[tuple[str, ...], ...]]


def check_model_available(name_or_path: str, probe_file: str, components: Components | None = None) -> None:
    """Raise a clear error if ``name_or_path`` is a withdrawn hub id, or neither a local folder
    nor (when offline) cached, or a local folder that lacks one of its ``components``.

    Args:
        name_or_path: a hub model id or a local folder.
        probe_file: a file every copy of the model has (``model_index.json`` for a diffusers
            pipeline, ``config.json`` for a transformers model), looked up in the local cache.
        components: for a local folder, the subfolders the loader reads and their files
            (``{"unet": (("config.json",), ("*.safetensors",)), ...}``), checked before any
            loading so a missing part is named instead of failing deep inside the loader.
    """
    if Path(name_or_path).expanduser().exists():
        if not (Path(name_or_path).expanduser() / probe_file).exists():
            raise BobInputError(f"{name_or_path} is a folder but has no {probe_file}; is it a saved model?")
        check_components(Path(name_or_path).expanduser(), components or {})
        return
    check_not_withdrawn(name_or_path, probe_file)
    if hub_offline() and not isinstance(try_to_load_from_cache(name_or_path, probe_file), str):
        raise BobInputError(
            f"model {name_or_path!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it on a machine with internet (`hf download {name_or_path}`, or "
            "`python -m bob.weights <this run's arguments>` for only the files bob reads; docs/weights.md) "
            "or pass the path of a local copy"
        )


def check_components(folder: Path, components: Components) -> None:
    """Raise naming the first component subfolder of ``folder``, or file in it, that is missing."""
    expected = ", ".join(f"{name}/" for name in components)
    advice = (
        f"a complete copy holds {expected}; download the whole model (`hf download <hub id> --local-dir {folder}`) "
        "or point at a complete folder"
    )
    for name, needs in components.items():
        part = folder / name
        if not part.is_dir():
            raise BobInputError(f"model folder {folder} has no {name}/ subfolder; {advice}")
        for alternatives in needs:
            if not any(any(part.glob(pattern)) for pattern in alternatives):
                raise BobInputError(f"model folder {folder} has {name}/ but no {' or '.join(alternatives)} in it; {advice}")
