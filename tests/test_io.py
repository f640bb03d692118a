"""Atomic writes (corrlib.companion.io): the target is either untouched or completely replaced."""

from __future__ import annotations

import os
import stat

import pytest

from corrlib.companion.io import atomic_path, atomic_write_bytes, atomic_write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "table.csv"  # parent folder is created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.suffix == ".csv"  # writers that infer the format from the suffix work
        assert not target.exists()
        tmp.write_text("a,b\n1,2\n")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "a,b\n1,2\n"
    assert _leftovers(target.parent) == []


def test_atomic_path_custom_suffix(tmp_path):
    with atomic_path(tmp_path / "data", suffix=".npz") as tmp:
        assert tmp.suffix == ".npz"
        tmp.write_bytes(b"x")
    assert (tmp_path / "data").read_bytes() == b"x"


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-written")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_error_without_old_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_and_bytes_overwrite(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "zweite \u00e9")
    assert target.read_text(encoding="utf-8") == "zweite \u00e9"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_written_files_get_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        target = tmp_path / "perm.txt"
        atomic_write_text(target, "x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o644  # not mkstemp's 0600
