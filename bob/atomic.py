"""Atomic file writes: a reader never sees a half-written file.

A run stopped by an exception or a catchable signal leaves no temporary file. One killed outright
(SIGKILL, the out-of-memory killer, a lost machine) can leave an empty hidden ``.<name>.<random>.tmp``
beside the file it was writing; a writer that resumes into a folder clears those with
`remove_stale_temporaries` before it writes again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: setting and restoring the umask later could race with other threads.
_UMASK = _read_umask()


def plain_permissions(path: str | Path) -> Path:
    """Give ``path`` (a file, or a folder and all it holds) the permissions of a plain ``open`` or ``mkdir``.

    Writers that stage through temporary files (mkstemp, mkdtemp, safetensors' ``save_file``)
    leave owner-only 0600 files and 0700 folders; this gives 0666 / 0777 less the umask.
    """
    path = Path(path)
    for item in [path, *(path.rglob("*") if path.is_dir() else ())]:
        if not item.is_symlink():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~_UMASK)
    return path


#: `atomic_write` stages ``<folder>/.<name>.<random>.tmp``.
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_GLOB = f".*{_TEMPORARY_SUFFIX}"


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files killed `atomic_write` calls left anywhere under ``folder``.

    Call it only on a folder this process owns and no other process is writing to: another
    writer's temporary file is in flight, not stale. Returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [item for item in folder.rglob(_TEMPORARY_GLOB) if item.is_file()]
    for item in stale:
        item.unlink(missing_ok=True)
    return len(stale)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it into place.

    The file gets the permissions of a plain ``open`` (0666 less the umask), not mkstemp's
    owner-only 0600, so a team sharing a runs folder can read what a job wrote.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX)
    os.close(fd)
    try:
        write(Path(tmp))
        plain_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
