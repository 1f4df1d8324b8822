"""dasr.store.lock: one writer per store, in this process and across processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dasr.store import StoreLockedError, StoreWriter, lock_path, merge_stores
from store_helpers import CONFIG, ROOT


def test_lock_refuses_second_writer(tmp_path):
    path = tmp_path / "l.h5"
    first = StoreWriter(path, CONFIG, ROOT)
    with pytest.raises(StoreLockedError) as info:
        StoreWriter(path, CONFIG, ROOT)
    assert str(info.value) == f"{path}: another process is writing this store (lock {lock_path(path)})"
    # A second process is refused as well.
    code = f"from dasr.store import *\ntry:\n StoreWriter({str(path)!r}, {CONFIG!r}, '/')\nexcept StoreLockedError:\n raise SystemExit(3)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
    with pytest.raises(StoreLockedError):
        merge_stores([path], path)
    first.close()
    StoreWriter(path, CONFIG, ROOT).close()
