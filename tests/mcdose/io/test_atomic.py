"""Tests for atomic writes."""

import os
import stat

import pytest

from mcdose.io.atomic import atomic_path


def test_success_renames_and_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_new_files_get_ordinary_permissions(tmp_path):
    target = tmp_path / "case.h5"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_copy_existing_starts_from_the_old_content(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target, copy_existing=True) as tmp:
        assert tmp.read_text() == "old"
        tmp.write_text("old+new")
    assert target.read_text() == "old+new"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="output folder"), atomic_path(
        tmp_path / "nope" / "x.h5"
    ):
        pass
