"""dasr.store.config: which configuration differences count, and how they are reported."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.store import RegionStore, StoreConfigError, config_differences, diff_configs, normalize_config
from dasr.store.config import MISSING, format_differences
from store_helpers import CONFIG, write_items


def test_config_mismatch_lists_keys(tmp_path):
    path = tmp_path / "c.h5"
    write_items(path, [0, 1], config=dict(CONFIG, shard="0/1", created="2024-01-01"))
    requested = dict(CONFIG, tau=0.6, layer="conv4", shard="3/4", created="2025-02-02")
    with pytest.raises(StoreConfigError) as info:
        RegionStore.open(path, expected_config=requested)
    message = str(info.value)
    assert "tau: stored=0.5 requested=0.6" in message
    assert 'layer: stored="conv5_block3_out" requested="conv4"' in message
    assert "shard" not in message and "created" not in message and "\n" not in message
    # Volatile keys alone never make configurations differ; dasr_version does.
    RegionStore.open(path, expected_config=dict(CONFIG, shard="1/2", created="x"))
    with pytest.raises(StoreConfigError, match="dasr_version: stored=\"0.1.0\" requested=\"0.2.0\""):
        RegionStore.open(path, expected_config=dict(CONFIG, dasr_version="0.2.0"))
    with pytest.raises(StoreConfigError, match="beta: stored=<missing> requested=1"):
        RegionStore.open(path, expected_config=dict(CONFIG, beta=1))


def test_config_differences_is_structured():
    a = {"a": 1, "b": True, "c": [1, 2], "e": "x", "shard": "0/2", "created": "t0"}
    b = {"a": 1.0, "b": 1, "c": [1, 2, 3], "d": None, "e": "x", "shard": "1/2"}
    differences = config_differences(a, b)
    # 1 == 1.0 (JSON writers disagree on them) but True != 1; volatile keys are ignored.
    assert differences == {"b": (True, 1), "c": ([1, 2], [1, 2, 3]), "d": (MISSING, None)}
    assert list(differences) == ["b", "c", "d"]
    assert config_differences(a, dict(a, shard="5/6", created="t1")) == {}
    assert format_differences(differences, ("first", "this")) == [
        "b: first=true this=1", "c: first=[1, 2] this=[1, 2, 3]", "d: first=<missing> this=null"]
    assert diff_configs(a, b) == format_differences(differences)  # the stored/requested labels


def test_normalize_config():
    assert normalize_config({"a": np.float32(0.5), "b": (1, np.int64(2)), "c": None}) == {"a": 0.5, "b": [1, 2], "c": None}
    with pytest.raises(TypeError, match="config\\['n'\\]"):
        normalize_config({"n": {"nested": 1}})
    with pytest.raises(TypeError, match="keys must be str"):
        normalize_config({1: 2})
    with pytest.raises(ValueError):
        normalize_config({"x": float("nan")})


def test_sharing_differences_add_the_backend_to_the_config_differences():
    from dasr.store.config import sharing_differences

    base = {"method": "dasr", "tau": 0.1}
    assert sharing_differences(base, {**base, "backend": "tensorflow"}) == []  # unrecorded = tensorflow
    assert sharing_differences({**base, "backend": "jax"}, {**base, "tau": 0.2}, ("first", "this")) == [
        "tau: first=0.1 this=0.2", 'backend: first="jax" this="tensorflow"']
