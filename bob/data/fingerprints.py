"""File content hashes, to recognise copies of the same image under different names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from bob.data.records import ImageRecord

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """sha256 over the relative names and contents of a folder's files: the same weights give the
    same digest wherever they lie and whenever they were copied (unlike a size-and-time
    fingerprint, which a fresh clone changes)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder).as_posix()}|{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def identical_files(references: Iterable[ImageRecord], candidates: Iterable[ImageRecord]) -> dict[str, list[str]]:
    """Candidates whose bytes equal some references': candidate sample id -> those references' ids.

    Files are compared by size first and hashed only when a size matches, so checking a few
    hundred copied shots against a whole train split reads little more than the shots.
    """
    by_size: dict[int, list[ImageRecord]] = {}
    for record in references:
        by_size.setdefault(record.path.stat().st_size, []).append(record)
    digests: dict[Path, str] = {}

    def digest(path: Path) -> str:
        if path not in digests:
            digests[path] = file_sha256(path)
        return digests[path]

    matches: dict[str, list[str]] = {}
    for candidate in candidates:
        same = [
            reference.sample_id
            for reference in by_size.get(candidate.path.stat().st_size, [])
            if digest(candidate.path) == digest(reference.path)
        ]
        if same:
            matches[candidate.sample_id] = same
    return matches
