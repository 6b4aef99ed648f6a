"""Atomic writes: whole files or none, with the permissions a plain open would give."""

import os
import stat

import pytest

from bob import atomic
from bob.atomic import atomic_write, atomic_write_text


def test_written_file_has_plain_open_permissions(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    path = atomic_write_text(tmp_path / "sub" / "report.md", "hello")
    assert path.read_text() == "hello"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0600
    monkeypatch.setattr(atomic, "_UMASK", 0o077)
    assert stat.S_IMODE(os.stat(atomic_write_text(tmp_path / "private.md", "x")).st_mode) == 0o600


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_plain_permissions_open_up_a_staged_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    staged = tmp_path / "model"
    (staged / "unet").mkdir(parents=True, mode=0o700)
    weights = staged / "unet" / "weights.safetensors"
    weights.write_bytes(b"x")
    weights.chmod(0o600)
    atomic.plain_permissions(staged)
    assert stat.S_IMODE(os.stat(staged / "unet").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(weights).st_mode) == 0o644


def test_remove_stale_temporaries_clears_what_a_killed_write_leaves_and_nothing_else(tmp_path):
    def killed(tmp):
        raise KeyboardInterrupt  # stands for the kill: the staged file is left as SIGKILL leaves it

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "images" / "a.png", killed)
    assert not list(tmp_path.rglob("*.tmp"))  # a catchable stop cleans up by itself
    nested = tmp_path / "images" / "0001"
    nested.mkdir(parents=True)
    stale = [tmp_path / ".manifest.json.x1.tmp", nested / ".00003.png.y2.tmp"]
    kept = [nested / "00003.png", tmp_path / "notes.tmp", nested / ".hidden"]
    for item in stale + kept:
        item.write_bytes(b"")
    assert atomic.remove_stale_temporaries(tmp_path) == 2
    assert [item.exists() for item in stale + kept] == [False, False, True, True, True]
    assert atomic.remove_stale_temporaries(tmp_path / "missing") == 0
