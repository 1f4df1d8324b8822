"""Tests for dasr.io.atomic: the one atomic-write helper every writer uses."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from dasr.io.atomic import atomic_path, atomic_write_bytes


def test_write_bytes_creates_folder_and_leaves_no_temp(tmp_path):
    path = tmp_path / "deep" / "out.json"
    atomic_write_bytes(path, b"first")
    assert path.read_bytes() == b"first"
    atomic_write_bytes(path, b"second")  # replaces an existing file
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["out.json"]


def test_atomic_path_success(tmp_path):
    path = tmp_path / "a.bin"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin")
        assert not path.exists()  # nothing under the final name until the end
        tmp.write_bytes(b"content")
    assert path.read_bytes() == b"content"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_exception_without_old_file(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(path):
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_suffix_is_kept(tmp_path):
    path = tmp_path / "model.weights.h5"
    with atomic_path(path, suffix=".weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5")
        assert tmp.name != path.name
        tmp.write_bytes(b"w")
    npz = tmp_path / "arrays.npz"
    with atomic_path(npz, suffix=".npz") as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez would append ".npz" to another name
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["x"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["arrays.npz", "model.weights.h5"]


def test_temp_names_are_unique(tmp_path):
    path = tmp_path / "x"
    with atomic_path(path) as a, atomic_path(path) as b:
        assert a != b
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert path.read_bytes() == b"a"  # the outer block finishes last


# --------------------------------------------------------------------------- a full disk


def _full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path):
    from dasr.errors import UserError
    from dasr.io.atomic import DiskFullError

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(DiskFullError) as info:
        with atomic_path(target, fsync=_full) as tmp:
            tmp.write_bytes(b"new")
    assert isinstance(info.value, UserError) and isinstance(info.value, OSError)
    assert str(info.value).startswith(f"{target}: no space left on device") and "\n" not in str(info.value)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_an_hdf5_write_error_quoting_enospc_is_a_full_disk_and_others_are_not(tmp_path):
    from dasr.io.atomic import DiskFullError, disk_full_error

    hdf5 = OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    assert isinstance(disk_full_error(tmp_path / "s.h5", hdf5), DiskFullError)
    assert disk_full_error(tmp_path / "s.h5", OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_error(tmp_path / "s.h5", ValueError("No space left on device")) is None
    with pytest.raises(PermissionError):  # any other error propagates as it is
        with atomic_path(tmp_path / "x", fsync=lambda _: (_ for _ in ()).throw(PermissionError("no"))):
            pass
