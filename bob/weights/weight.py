"""One thing a run loads: some files of a hub repository, a file behind a URL, or a local path."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from bob.withdrawn_models import mirror_for

Kind = Literal["hub", "url", "local"]


@dataclass(frozen=True)
class Weight:
    """Weights a run needs, and where in its config they are named.

    Args:
        keys: the config keys that name it (``model.init_args.base_model``); one weight named
            twice is fetched once.
        kind: ``hub`` (a Hugging Face repository), ``url`` (a file saved in the torch hub
            cache) or ``local`` (a path: nothing to fetch).
        name: the repository id, the URL or the path.
        what: what it is, for people (``Stable Diffusion pipeline``).
        revision: hub revision (branch, tag or commit); None is the default branch.
        allow_patterns: the repository files the run reads (``snapshot_download`` patterns);
            empty takes the whole repository.
        fallback_patterns: files taken as well when ``allow_patterns`` match no weights file
            (``.safetensors``), e.g. ``pytorch_model*.bin`` of a repository without safetensors.
        probe_file: a file every copy has, to tell a cached repository from a missing one.
        destination: for ``url``, the file the download is saved as.
        note: for ``local``, what the path is (a folder, a file, or missing).
    """

    keys: tuple[str, ...]
    kind: Kind
    name: str
    what: str
    revision: str | None = None
    allow_patterns: tuple[str, ...] = ()
    fallback_patterns: tuple[str, ...] = ()
    probe_file: str | None = None
    destination: str | None = None
    note: str = ""

    @property
    def mirror(self) -> str | None:
        """The mirror to use instead, when ``name`` is a withdrawn hub id."""
        return mirror_for(self.name) if self.kind == "hub" else None

    def merged(self, other: Weight) -> Weight:
        """This weight also named by ``other``'s keys, with the files both need."""
        patterns = self.allow_patterns + tuple(
            p for p in other.allow_patterns if p not in self.allow_patterns
        )
        if not (self.allow_patterns and other.allow_patterns):
            patterns = ()  # one of them needs the whole repository
        fallback = self.fallback_patterns + tuple(
            p for p in other.fallback_patterns if p not in self.fallback_patterns
        )
        return replace(self, keys=self.keys + other.keys, allow_patterns=patterns, fallback_patterns=fallback)

    def identity(self) -> tuple[str, str, str | None]:
        return self.kind, self.name, self.revision

    def cache_state(self) -> str:
        """``cached``, ``partly cached`` or ``not cached``, read from the local caches only."""
        if self.kind == "local":
            return "local"
        if self.kind == "url":
            return "cached" if self.destination and Path(self.destination).is_file() else "not cached"
        # Globs cannot be looked up without the repository's file list; the literal names can.
        files = [p for p in self.allow_patterns if not any(c in p for c in "*?[")] or [
            self.probe_file or "config.json"
        ]
        found = sum(
            isinstance(try_to_load_from_cache(self.name, f, revision=self.revision), str) for f in files
        )
        return "cached" if found == len(files) else "partly cached" if found else "not cached"

    def command(self) -> str:
        """A shell command that fetches the same files by hand (``hf download``, ``curl``)."""
        if self.kind == "url":
            return f"curl -L --create-dirs -o {shlex.quote(self.destination or '')} {shlex.quote(self.name)}"
        if self.kind == "local":
            return ""
        parts = ["hf", "download", self.name]
        if self.revision:
            parts += ["--revision", self.revision]
        for pattern in self.allow_patterns:
            parts += ["--include", pattern]
        return shlex.join(parts)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` can be a hub repository id (``owner/name``) rather than only a path."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_or_local(key: str, name: str, what: str, **hub: object) -> Weight:
    """A hub weight, or a local one when ``name`` is an existing path or cannot be a hub id.

    Relative paths are read from the working directory, as the run reads them.
    """
    path = Path(name).expanduser()
    if path.exists():
        return Weight((key,), "local", name, what, note="local folder" if path.is_dir() else "local file")
    if not is_hub_id(name):
        return Weight((key,), "local", name, what, note="local path, not found (made by another stage?)")
    return Weight((key,), "hub", name, what, **hub)  # type: ignore[arg-type]


def local_file(key: str, path: str, what: str) -> Weight:
    """A weights file given by path: nothing to fetch, found or not."""
    note = "local file" if Path(path).expanduser().is_file() else "local file, not found"
    return Weight((key,), "local", path, what, note=note)
