"""The synthetic image folder (stage 3 output): atomic per-image writes, manifests, and the reader."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from bob.atomic import atomic_write, atomic_write_json, atomic_write_text, remove_stale_temporaries
from bob.data.errors import BobInputError
from bob.data.fingerprints import file_sha256
from bob.data.generation_plan import PlanItem
from bob.data.records import ImageRecord

log = logging.getLogger(__name__)

MANIFEST_LINES = "manifest.jsonl"
MANIFEST_SUMMARY = "manifest.json"
IMAGES_DIR = "images"
FORMAT_VERSION = 1

ImageFormat = Literal["png", "jpg", "webp"]
_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


class SyntheticSetError(BobInputError):
    """A synthetic folder is missing, incomplete, made for other classes, or made by another recipe."""


def read_manifest_lines(folder: Path) -> list[dict]:
    path = Path(folder) / MANIFEST_LINES
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SyntheticSetError(f"{path}:{number} is not JSON: {error}") from error
    return entries


def read_summary(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST_SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SyntheticSetError(f"{path} is not JSON ({error}); delete the folder and generate again") from error


def load_synthetic_records(folder: str | Path, class_names: list[str]) -> list[ImageRecord]:
    """The images of a synthetic folder, labelled in the dataset's class order.

    Raises `SyntheticSetError` when the folder is missing, when its manifest says generation
    has not finished, or when it holds classes the dataset does not have.
    """
    folder = Path(folder)
    summary = read_summary(folder)
    if summary is None:
        raise SyntheticSetError(
            f"no synthetic image set at {folder} (expected {MANIFEST_SUMMARY} and {MANIFEST_LINES}); "
            "the generation stage makes it: `python main.py predict -c configs/generate.yaml -c configs/datasets/<dataset>.yaml`"
        )
    if not summary.get("complete", False) or not (folder / MANIFEST_LINES).is_file():
        raise SyntheticSetError(
            f"synthetic set {folder} is incomplete ({summary.get('num_images', '?')} of "
            f"{summary.get('num_planned', '?')} images when last assembled); it is being generated, or "
            "its run stopped: rerun the generation stage to finish it"
        )
    label_of = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(summary.get("class_names", [])) - set(label_of))
    if unknown:
        raise SyntheticSetError(
            f"synthetic set {folder} has classes the dataset does not: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; it was generated for another dataset or split"
        )
    records, seen = [], set()
    for entry in read_manifest_lines(folder):
        if entry["file"] in seen:
            raise SyntheticSetError(f"{folder / MANIFEST_LINES} lists {entry['file']} twice; generate the set again")
        seen.add(entry["file"])
        path = folder / entry["file"]
        if not path.is_file():
            raise SyntheticSetError(f"{folder / MANIFEST_LINES} lists {entry['file']}, which is missing")
        records.append(ImageRecord(f"synthetic/{entry['file']}", path, label_of[entry["class_name"]], entry["class_name"]))
    return sorted(records, key=lambda r: r.sample_id)


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable ``key: old -> new`` lines for every leaf where two identities differ."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            lines += identity_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


class SyntheticSetFolder:
    """Writes a synthetic set so that killed runs resume and two recipes never mix.

    Layout: ``images/<label>/<index>.<ext>`` with a ``.json`` sidecar beside each image while
    generation runs (the image is written first, so a sidecar means a finished image);
    ``manifest.json`` (identity, counts, ``complete``) is written before the first image and
    ``manifest.jsonl`` (one line per image, plan order) when a run ends, which also folds the
    sidecars in. Every file is written atomically. Each line records the image's size
    (``bytes``) and ``sha256``; a resumed run checks every finished image against them first
    (`recheck`) and makes a damaged one again.

    Args:
        folder: the output folder.
        image_format: ``png`` (lossless), ``jpg`` or ``webp``.
        quality: JPEG / WebP quality (1-100); ignored for PNG.
    """

    def __init__(self, folder: str | Path, image_format: ImageFormat = "png", quality: int = 95):
        if image_format not in _PIL_FORMATS:
            raise SyntheticSetError(f"image_format must be one of {sorted(_PIL_FORMATS)}, got {image_format!r}")
        self.folder = Path(folder)
        self.image_format = image_format
        self.quality = quality
        #: keys whose image this process wrote or found intact; `recheck` reads them once only
        self._verified: set[str] = set()

    def image_file(self, key: str) -> str:
        """The image path relative to the folder, as the manifest lists it."""
        return f"{IMAGES_DIR}/{key}.{self.image_format}"

    def _sidecar(self, key: str) -> Path:
        return self.folder / IMAGES_DIR / f"{key}.json"

    def check_identity(self, identity: Mapping[str, Any]) -> None:
        """Refuse to add to a folder made by another model, LoRA, plan or format."""
        summary = read_summary(self.folder)
        if summary is None:
            if (self.folder / IMAGES_DIR).exists():
                raise SyntheticSetError(
                    f"{self.folder} holds an {IMAGES_DIR}/ folder but no {MANIFEST_SUMMARY}, so what made those "
                    "images is unknown; choose an empty output folder or delete this one"
                )
            return
        if "identity" not in summary:
            raise SyntheticSetError(f"{self.folder / MANIFEST_SUMMARY} was not written by bob's generation stage")
        differences = identity_differences(summary["identity"], identity)
        # A folder whose run stopped before its first image holds nothing to mix with.
        if differences and self.entries():
            shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
            raise SyntheticSetError(
                f"{self.folder} was generated with a different recipe ({shown}); refusing to mix two sets. "
                "Point the output folder elsewhere, or delete this one to start over."
            )

    def start(self, identity: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        """Record the identity before the first image (kept when resuming), clear stale temp
        files, and `recheck` the finished images (one process: rank 0).

        Call `check_identity` first: it guarantees that a folder with another identity holds no images.
        """
        remove_stale_temporaries(self.folder)
        self.recheck()
        previous = read_summary(self.folder)
        if previous is None or previous.get("identity") != dict(identity):
            atomic_write_json(
                self.folder / MANIFEST_SUMMARY,
                {**summary, "identity": dict(identity), "complete": False, "num_images": 0},
            )

    def entries(self) -> dict[str, dict[str, Any]]:
        """key -> manifest line of every finished image: the assembled manifest, then newer sidecars."""
        found: dict[str, dict[str, Any]] = {}
        if (self.folder / MANIFEST_LINES).is_file():
            found = {e["key"]: e for e in read_manifest_lines(self.folder)}
        images = self.folder / IMAGES_DIR
        if images.is_dir():
            for sidecar in sorted(images.rglob("*.json")):
                try:
                    entry = json.loads(sidecar.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    continue  # unreachable with atomic writes, but a hand-edited file must not stop a resume
                found[entry["key"]] = entry
        return {k: e for k, e in found.items() if (self.folder / e["file"]).is_file()}

    def done_keys(self) -> set[str]:
        return set(self.entries())

    def _intact(self, entry: Mapping[str, Any]) -> bool:
        path = self.folder / entry["file"]
        return path.stat().st_size == entry["bytes"] and file_sha256(path) == entry["sha256"]

    def recheck(self) -> list[str]:
        """Check each finished image against the size and sha256 its manifest line records.

        An image that differs (changed or damaged after it was written) is deleted with its
        sidecar, so it counts as missing and the run makes it again; the keys are logged and
        returned. Images from before hashes were recorded are not checked. Not for concurrent
        use: call it from one process (rank 0) before the pending images are listed.
        """
        entries = self.entries()
        unhashed = sum(1 for e in entries.values() if "sha256" not in e)
        todo = [(k, e) for k, e in entries.items() if "sha256" in e and k not in self._verified]
        # hashlib releases the GIL on large buffers: threads read and hash files side by side.
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            intact = list(pool.map(lambda pair: self._intact(pair[1]), todo))
        damaged = [key for (key, _), ok in zip(todo, intact, strict=True) if not ok]
        self._verified.update(key for (key, _), ok in zip(todo, intact, strict=True) if ok)
        for key in damaged:
            (self.folder / entries[key]["file"]).unlink(missing_ok=True)
            self._sidecar(key).unlink(missing_ok=True)
        if damaged:
            log.warning(
                "%d finished image(s) in %s do not match the size and sha256 their manifest line records "
                "(changed after they were written); generating them again: %s",
                len(damaged), self.folder, ", ".join(entries[k]["file"] for k in damaged),
            )
        if unhashed:
            log.info("%d image(s) in %s have no recorded sha256 (an older bob wrote them); not checked", unhashed, self.folder)
        return damaged

    def write(self, item: PlanItem, image: np.ndarray | Image.Image, extra: Mapping[str, Any]) -> Path:
        """Write one image, then its manifest line as a sidecar (the marker that it is finished)."""
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        path = self.folder / self.image_file(item.key)
        options: dict[str, Any] = {} if self.image_format == "png" else {"quality": self.quality}
        encoded = io.BytesIO()
        picture.save(encoded, format=_PIL_FORMATS[self.image_format], **options)
        data = encoded.getvalue()
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        entry = {
            "file": self.image_file(item.key), **item.to_dict(), **extra,
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write_text(self._sidecar(item.key), json.dumps(entry, ensure_ascii=False) + "\n")
        self._verified.add(item.key)
        return path

    def finish(self, planned: Iterable[str], summary: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``manifest.jsonl`` (plan order) and ``manifest.json``; return the summary.

        ``planned`` is every key of the plan; finished images outside it (none, unless a
        folder was edited by hand) are left out of the manifest.
        """
        planned = list(planned)
        entries = self.entries()
        lines = [entries[k] for k in planned if k in entries]
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines)
        atomic_write_text(self.folder / MANIFEST_LINES, text)
        previous = read_summary(self.folder) or {}
        result = {
            **previous,
            **summary,
            "format_version": FORMAT_VERSION,
            "complete": len(lines) == len(planned),
            "num_images": len(lines),
            "num_planned": len(planned),
            "num_shortened_prompts": sum(1 for e in lines if e.get("shortened")),
        }
        atomic_write_json(self.folder / MANIFEST_SUMMARY, result)
        # Sidecars are folded into manifest.jsonl now; a crash between the two writes only
        # leaves sidecars that repeat lines already there, which `entries` reads the same.
        for key in planned:
            self._sidecar(key).unlink(missing_ok=True)
        log.info("synthetic set %s: %d of %d images", self.folder, len(lines), len(planned))
        return result
