"""The shard plan without Ray: shard counts, list hashes, the plan file, resume checks, pending shards."""

from __future__ import annotations

import json

import pytest

from dasr.distributed.plan import (PlanMismatchError, ShardPlan, check_plan, list_hash, make_plan, pending_shards,
                                   plan_config, plan_path, read_plan, shard_count, shard_path, write_plan)
from dasr.errors import InputError, UserError
from dasr.features.spec import ExtractorSpec
from dasr.store.files import parts_path
from dasr.store.shards import shard_of

pytestmark = pytest.mark.timeout(60)

SPEC = ExtractorSpec.from_options(weights="random", max_side=64)
NAMES = [f"img{i:02d}.jpg" for i in range(20)]


def config(spec=SPEC, dtype="float32", root="/data/a"):
    return plan_config(spec, "random", dtype, root)


@pytest.mark.parametrize("images, size, expected", [(0, 5, 1), (1, 5, 1), (5, 5, 1), (6, 5, 2), (20, 6, 4),
                                                    (2_000_001, 2000, 1001)])
def test_shard_count_is_the_fewest_shards_of_at_most_shard_size(images, size, expected):
    n = shard_count(images, size)
    assert n == expected
    if images < 100:  # the n interleaved shards partition the list, none over the size
        shards = [shard_of(list(range(images)), (i, n)) for i in range(n)]
        assert all(len(s) <= size for s in shards)
        assert sorted(k for s in shards for k, _ in s) == list(range(images))


def test_shard_count_refuses_a_size_below_one():
    with pytest.raises(InputError, match="shard size"):
        shard_count(10, 0)


def test_list_hash_depends_on_names_and_order_only():
    assert list_hash(NAMES) == list_hash(list(NAMES))
    assert list_hash(NAMES) != list_hash(NAMES[::-1])
    assert list_hash(NAMES) != list_hash(NAMES[:-1])
    # One line per name: joining two names must not collide with one longer name.
    assert list_hash(["ab"]) != list_hash(["a", "b"])
    assert list_hash(["caf\udce9.jpg"]) != list_hash(["cafe.jpg"])  # non-UTF-8 names hash by their bytes


def test_plan_config_names_every_option_but_seed_chunk_and_the_weights_path():
    cfg = config()
    assert cfg["weights"] == "random" and cfg["feature_dtype"] == "float32" and cfg["root"] == "/data/a"
    assert cfg["max_side"] == 64 and cfg["tau"] == SPEC.region.tau and cfg["method"] == "dasr-star"
    assert "seed_chunk" not in cfg
    assert config(SPEC.replace(seed_chunk=3)) == cfg
    assert config(SPEC.replace(tau=0.2)) != cfg
    assert json.loads(json.dumps(cfg)) == cfg


def test_plan_round_trips_through_its_file(tmp_path):
    out = tmp_path / "store.h5"
    assert read_plan(out) is None
    plan = make_plan(NAMES, 6, config())
    assert plan.shards == 4 and plan.images == 20
    assert write_plan(out, plan) == plan_path(out) == tmp_path / "store.h5.plan.json"
    assert read_plan(out) == plan
    check_plan(read_plan(out), make_plan(list(NAMES), 6, config()), plan_path(out))  # the same run: accepted


def test_a_file_that_is_not_a_plan_is_refused(tmp_path):
    out = tmp_path / "s.h5"
    plan_path(out).write_text("{not json")
    with pytest.raises(PlanMismatchError, match="not a shard plan"):
        read_plan(out)
    plan_path(out).write_text(json.dumps({"format": "other"}))
    with pytest.raises(PlanMismatchError, match="not a shard plan of this version"):
        read_plan(out)


def test_a_changed_list_is_refused_naming_it():
    stored = make_plan(NAMES, 6, config())
    with pytest.raises(PlanMismatchError, match=r"image list: stored 20 images .* requested 19 images"):
        check_plan(stored, make_plan(NAMES[:-1], 6, config()), plan_path("o.h5"))
    renamed = NAMES[:-1] + ["other.jpg"]
    with pytest.raises(PlanMismatchError, match="image list"):
        check_plan(stored, make_plan(renamed, 6, config()), plan_path("o.h5"))


def test_a_changed_config_or_shard_size_is_refused_naming_each_difference():
    stored = make_plan(NAMES, 6, config())
    with pytest.raises(PlanMismatchError) as err:
        check_plan(stored, make_plan(NAMES, 6, config(SPEC.replace(tau=0.25), dtype="float16")), plan_path("o.h5"))
    message = str(err.value)
    assert "tau: stored=0.1 requested=0.25" in message and 'feature_dtype: stored="float32"' in message
    assert "image list" not in message and "shard_size" not in message
    assert isinstance(err.value, UserError)
    with pytest.raises(PlanMismatchError, match="shard_size: stored=6 requested=5"):
        check_plan(stored, make_plan(NAMES, 5, config()), plan_path("o.h5"))
    with pytest.raises(PlanMismatchError, match='root: stored="/data/a" requested="/data/b"'):
        check_plan(stored, make_plan(NAMES, 6, config(root="/data/b")), plan_path("o.h5"))
    # The backend is volatile for searching, not for one store's shards.
    other_backend = {**config(), "backend": "jax"}
    with pytest.raises(PlanMismatchError, match='backend: stored="tensorflow" requested="jax"'):
        check_plan(stored, make_plan(NAMES, 6, other_backend), plan_path("o.h5"))


def test_pending_shards_are_those_without_a_finished_store(tmp_path):
    out = tmp_path / "o.h5"
    plan = make_plan(NAMES, 6, config())
    assert pending_shards(out, plan) == [0, 1, 2, 3]
    for i in (0, 2):
        shard_path(out, i, 4).parent.mkdir(parents=True, exist_ok=True)
        shard_path(out, i, 4).write_bytes(b"h5")
    parts_path(shard_path(out, 2, 4)).mkdir()  # shard 2's writer did not finish
    assert pending_shards(out, plan) == [1, 2, 3]
    assert shard_path(out, 1, 4).name == "shard-00001-of-00004.h5"


def test_plan_fields_are_the_file_fields():
    plan = make_plan(NAMES, 6, config())
    data = plan.to_json()
    assert ShardPlan.from_json(data, plan_path("o.h5")) == plan
    del data["list_hash"]
    with pytest.raises(PlanMismatchError):
        ShardPlan.from_json(data, plan_path("o.h5"))


def test_the_planned_list_keeps_odd_names_and_refuses_what_a_list_cannot_hold(tmp_path):
    from dasr.distributed.ray_engine import planned_list
    from dasr.store.extract import read_image_list

    root = tmp_path / "images"
    root.mkdir()
    names = ["#hash.jpg", " lead.jpg", "sub/caf\udce9.jpg", "a.jpg"]
    path = planned_list(tmp_path / "o.h5", root, names)
    assert read_image_list(path, root)[1] == names
    with pytest.raises(InputError, match="line break"):
        planned_list(tmp_path / "o.h5", root, ["a\nb.jpg"])
    with pytest.raises(InputError, match="does not survive an image list"):
        planned_list(tmp_path / "o.h5", root, ["a.jpg", "trail.jpg "])
