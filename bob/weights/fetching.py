"""Putting a run's weights into the Hugging Face and torch hub caches, or saying clearly why not."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    DryRunError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import DryRunFileInfo

from bob.data.errors import BobInputError
from bob.hub import hub_offline
from bob.weights.weight import Weight

ELSEWHERE = (
    "run `python -m bob.weights` with the same arguments on a machine with internet, then copy its "
    "Hugging Face cache (HF_HOME, ~/.cache/huggingface) and torch hub cache (TORCH_HOME, ~/.cache/torch) "
    "to this one or share them (docs/weights.md)"
)


def refuse_withdrawn(weights: list[Weight]) -> None:
    """Refuse, before anything is downloaded, a run that names a withdrawn hub id."""
    withdrawn = [w for w in weights if w.mirror]
    if withdrawn:
        lines = "; ".join(f"{', '.join(w.keys)} = {w.name!r} -> use {w.mirror!r}" for w in withdrawn)
        raise BobInputError(
            f"withdrawn from the Hugging Face hub: {lines}. Set the mirror in the config or override it "
            f"on the command line (e.g. --{withdrawn[0].keys[0]}={withdrawn[0].mirror}); it is the same checkpoint"
        )


def fetch(weight: Weight, dry_run: bool = False) -> str:
    """Download what ``weight`` needs into its cache (nothing when cached); a one-line report.

    With ``dry_run`` nothing is written: the hub is asked which files would be downloaded.
    Raises `BobInputError` naming the repository or URL when it cannot be fetched.
    """
    if weight.kind == "local":
        return f"{weight.name}: {weight.note}, nothing to fetch"
    if weight.kind == "url":
        return fetch_url(weight, dry_run)
    try:
        return fetch_hub(weight, dry_run)
    except BobInputError:
        raise
    except GatedRepoError as error:
        raise BobInputError(
            f"{weight.name} is gated: accept its terms at https://huggingface.co/{weight.name} and log in "
            "(`hf auth login` or HF_TOKEN), then run this again"
        ) from error
    except RepositoryNotFoundError as error:
        raise BobInputError(
            f"the Hugging Face hub has no repository {weight.name!r} (or it is private); check "
            f"{', '.join(weight.keys)} in the config"
        ) from error
    except RevisionNotFoundError as error:
        raise BobInputError(
            f"{weight.name} has no revision {weight.revision!r} ({', '.join(weight.keys)})"
        ) from error
    except DryRunError as error:
        raise BobInputError(
            f"cannot ask the hub about {weight.name}: {unreachable()}; {ELSEWHERE}"
        ) from error
    except LocalEntryNotFoundError as error:  # offline or the hub unreachable, and not (all) cached
        raise BobInputError(
            f"cannot fetch {weight.name}: it is not (completely) cached and {unreachable()}; {ELSEWHERE}"
        ) from error
    except Exception as error:  # network failures of every other kind: one message, no traceback
        raise BobInputError(
            f"fetching {weight.name} failed ({type(error).__name__}: {error}); {ELSEWHERE}"
        ) from error


def unreachable() -> str:
    return "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub cannot be reached"


def fetch_hub(weight: Weight, dry_run: bool) -> str:
    if dry_run:
        planned = plan(weight, weight.allow_patterns)
        if weight.fallback_patterns and not any(f.filename.endswith(".safetensors") for f in planned):
            planned += plan(weight, weight.fallback_patterns)
        total = sum(f.file_size or 0 for f in planned)
        missing = sum(f.file_size or 0 for f in planned if f.will_download)
        return (
            f"{weight.name}: {len(planned)} files, {size_text(total)}; would download "
            f"{sum(f.will_download for f in planned)} of them ({size_text(missing)})"
        )
    folder = download(weight, weight.allow_patterns)
    if weight.fallback_patterns and not any(folder.rglob("*.safetensors")):
        folder = download(weight, weight.fallback_patterns)
    return f"{weight.name}: cached in {folder}"


def download(weight: Weight, patterns: tuple[str, ...]) -> Path:
    """The repository's files matching ``patterns`` (all when empty) in the cache; their snapshot folder."""
    folder = snapshot_download(
        weight.name,
        revision=weight.revision,
        allow_patterns=list(patterns) or None,
        local_files_only=hub_offline(),
    )
    return Path(folder)


def plan(weight: Weight, patterns: tuple[str, ...]) -> list[DryRunFileInfo]:
    """What `download` would fetch, asked of the hub without downloading."""
    return snapshot_download(
        weight.name, revision=weight.revision, allow_patterns=list(patterns) or None, dry_run=True
    )


def size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def fetch_url(weight: Weight, dry_run: bool) -> str:
    """A file behind a URL (not a hub repository), saved where torch.hub and its users look for it."""
    destination = Path(weight.destination or "")
    if destination.is_file():
        return f"{weight.name}: cached at {destination}"
    if dry_run:
        return f"{weight.name}: would download to {destination}"
    if hub_offline():
        raise BobInputError(
            f"cannot fetch {weight.name} into {destination}: HF_HUB_OFFLINE is set; {ELSEWHERE}"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Written to a temporary file next to the destination and moved there when complete.
        torch.hub.download_url_to_file(weight.name, str(destination))
    except (URLError, OSError) as error:
        raise BobInputError(f"cannot download {weight.name} ({error}); {ELSEWHERE}") from error
    return f"{weight.name}: saved to {destination}"
