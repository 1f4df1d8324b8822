"""dasr.store.shards: shard specs and the partition of a collection."""

from __future__ import annotations

import pytest

from dasr.store import parse_shard, shard_of


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 0/1 ") == (0, 1)
    for text in ["4/4", "1/0", "a/b", "1", "-1/2", "1/2/3", ""]:
        with pytest.raises(ValueError, match="invalid shard"):
            parse_shard(text)


def test_shard_of_partitions_items():
    items = list("abcdefg")
    shards = [shard_of(items, (i, 3)) for i in range(3)]
    assert shards[1] == [(1, "b"), (4, "e")]
    assert sorted(pair for shard in shards for pair in shard) == list(enumerate(items))
    assert shard_of(items, (0, 1)) == list(enumerate(items))
    for bad in [(3, 3), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="invalid shard"):
            shard_of(items, bad)
