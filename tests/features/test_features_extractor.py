"""The per-image pipeline on an untrained ResNet-50 and small images."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from dasr.model.backbone import build_backbone
from dasr.features.extractor import Extractor, prepare_input
from dasr.regions import RegionConfig, nms
from tolerances import RESNET50_TOP_DEPTH, assert_boxes_close, assert_close_to_max, forward_bound


@functools.cache
def BACKBONE():
    return build_backbone("resnet50", weights="random")


@pytest.fixture(scope="module")
def backbone():
    return BACKBONE()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((96, 160, 3), 90, np.uint8)
    img[20:60, 30:80] = rng.integers(0, 255, (40, 50, 3))
    img[50:90, 100:150] = rng.integers(100, 255, (40, 50, 3))
    return img


def test_boxes_in_original_coordinates(backbone, image):
    ex = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32"))
    out = ex(image, keep_maps=True)
    r = out.regions
    assert out.scale == pytest.approx(128 / 160)
    assert len(r) > 0 and out.features.shape == (len(r), 2048)  # conv5_block1_out of ResNet-50
    assert np.all(r.boxes[:, 0] >= 0) and np.all(r.boxes[:, 2] <= 160 + 1e-3)
    assert np.all(r.boxes[:, 1] >= 0) and np.all(r.boxes[:, 3] <= 96 + 1e-3)
    assert np.all(r.boxes[:, 2] > r.boxes[:, 0])
    assert out.maps.shape == (len(r), 77, 128)
    assert np.all(np.diff(r.scores) <= 0)  # NMS keeps regions by decreasing score


def test_features_are_box_pooled(backbone, image):
    """Each feature is the plain mean of conv5_block1_out over the cells its box covers.

    The cells are worked out here by hand from the README's rule (cell c of a stride-32 map
    covers input pixels [32c, 32c+32); a box covers cells floor(x1/32) .. ceil(x2/32)).
    """
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128))
    out = ex(image)
    _, scale, _, acts = ex.forward(image)
    fmap = np.asarray(acts["conv5_block1_out"][0], np.float64)
    assert fmap.shape[:2] == (3, 4)  # 77 x 128 input, stride 32
    for box, feature in zip(out.regions.boxes, out.features):
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        c0, c1 = int(x1 // 32), max(int(x1 // 32) + 1, int(np.ceil(x2 / 32)))
        r0, r1 = int(y1 // 32), max(int(y1 // 32) + 1, int(np.ceil(y2 / 32)))
        want = fmap[r0:min(r1, 3), c0:min(c1, 4)].reshape(-1, fmap.shape[2]).mean(axis=0)
        np.testing.assert_allclose(feature, want, rtol=1e-4, atol=1e-6)
    box = tuple(float(v) for v in out.regions.boxes[0])
    np.testing.assert_allclose(ex.describe_box(image, box), out.features[0], rtol=1e-5)


def test_nms_keeps_exactly_the_nms_rows_of_the_no_nms_regions(backbone, image):
    """β = 0.3 gives the rows of the no-NMS regions that NMS at 0.3 keeps (on the stored boxes)."""
    none = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=None, max_side=128))(image)
    some = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=0.3, max_side=128))(image)
    keep = nms(none.regions.boxes, none.regions.scores, 0.3)
    assert 0 < len(keep) < len(none.regions), "the image's seeds overlap: NMS must drop some"
    np.testing.assert_array_equal(some.regions.boxes, none.regions.boxes[keep])
    np.testing.assert_array_equal(some.features, none.features[keep])


def test_the_method_decides_the_nms_default(backbone, image):
    """A library user's ``Extractor(backbone, "dasr")`` runs DASR without NMS, like the CLI."""
    dasr = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128))
    assert dasr.region.nms_iou is None and Extractor(backbone, "dasr").region.nms_iou is None
    assert Extractor(backbone, "dasr-star").region.nms_iou == 0.3
    assert Extractor(backbone, "fixed-box").region.method == "dasr-star"
    plain = Extractor(backbone, "dasr", RegionConfig(method="dasr", nms_iou=None, max_side=128))(image)
    np.testing.assert_array_equal(dasr(image).regions.boxes, plain.regions.boxes)
    with pytest.raises(ValueError, match="seed rule"):
        Extractor(backbone, "dasr", RegionConfig(method="dasr-star"))


@pytest.mark.parametrize("method", ["gap", "mac", "rmac", "crow", "gem"])
def test_global_methods_give_one_whole_image_region(backbone, image, method):
    ex = Extractor(backbone, method, RegionConfig(max_side=128, backprop_dtype="float32"))
    out = ex(image)
    assert len(out.regions) == 1 and out.features.shape == (1, 2048)
    np.testing.assert_allclose(out.regions.boxes[0], [0, 0, 160, 96])
    fmap = ex.feature_map(ex.forward(image)[3]).astype(np.float64)
    assert fmap.shape[:2] == (3, 4)  # 77 x 128 input, stride 32: the whole map is the image
    if method in ("gap", "mac", "gem"):  # by hand: the mean / the max / the cubic mean of every cell
        want = {"gap": fmap.mean((0, 1)), "mac": fmap.max((0, 1)),
                "gem": (np.maximum(fmap, 1e-6) ** 3).mean((0, 1)) ** (1 / 3)}[method]
        np.testing.assert_allclose(out.features[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["gap", "mac"])
def test_a_global_methods_query_is_pooled_over_the_cells_of_its_box(backbone, image, method):
    """The query box (original pixels) x 0.8 (160 -> 128) on the stride-32 map: x 20..100 -> 16..80 px
    -> columns 0..2 (floor(16/32) to ceil(80/32)); y 10..50 -> 8..40 px -> rows 0..1."""
    ex = Extractor(backbone, method, RegionConfig(max_side=128, backprop_dtype="float32"))
    fmap = ex.feature_map(ex.forward(image)[3]).astype(np.float64)[0:2, 0:3]
    want = fmap.mean((0, 1)) if method == "gap" else fmap.max((0, 1))
    np.testing.assert_allclose(ex.describe_box(image, (20, 10, 100, 50)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, layer", [("resnet50", None), ("resnet50", "conv4_block6_out"),
                                         ("vgg16", "block5_conv3")])
def test_fixed_box_control_uses_seed_centres(name, layer, image):
    """A seed is a cell of the top layer: its centre in input pixels is (cell + 0.5) x the top
    layer's stride, measured here from the shapes, whatever the pooled layer's stride (16 here)."""
    net = build_backbone(name, weights="random") if name != "resnet50" else BACKBONE()
    ex = Extractor(net, "fixed-box", RegionConfig(max_side=128), fixed_box_side=16, feature_layer=layer)
    x, _, _, acts = ex.forward(image)
    top = np.asarray(acts[net.top_layer])
    stride = x.shape[2] / top.shape[2]  # 128 input columns over the top layer's 4
    assert stride == 32 and (layer is None or ex.stride == 16)
    out = ex(image)
    r = out.regions
    centres = np.stack([(r.boxes[:, 0] + r.boxes[:, 2]) / 2, (r.boxes[:, 1] + r.boxes[:, 3]) / 2], 1) * out.scale
    seeds = (r.seeds[:, ::-1] + 0.5) * stride
    inside = (r.boxes[:, 0] > 0) & (r.boxes[:, 1] > 0) & (r.boxes[:, 2] < 160) & (r.boxes[:, 3] < 96)
    assert inside.any()
    np.testing.assert_allclose(centres[inside], seeds[inside], atol=1e-3)
    assert ex.config()["fixed_box_side"] == 16


def test_tiny_and_thin_images_are_padded(backbone):
    x, scale, size = prepare_input(np.zeros((2, 300, 3), np.uint8), 128)
    assert size == (128, 1) and x.shape[1:3] == (32, 128)  # one row of pixels, padded to one cell
    out = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32"))(
        np.full((1, 1, 3), 200, np.uint8))
    assert out.scale == 128.0 and out.input_size == (128, 128)
    # every box inside the 1 x 1 image, every feature finite: nothing of the padding leaks out
    assert np.all(out.regions.boxes >= 0) and np.all(out.regions.boxes <= 1.0 + 1e-6)
    assert out.features.shape == (len(out.regions), 2048) and np.all(np.isfinite(out.features))


def test_config_records_everything(backbone):
    cfg = Extractor(backbone, "dasr-star", RegionConfig(tau=0.2, backprop_dtype="float32")).config()
    for key in ("backbone", "weights", "method", "feature_layer", "pooling", "max_side", "tau", "nms_iou",
                "input_rule", "strided_conv", "stop_stride", "backprop_dtype", "dasr_version"):
        assert key in cfg
    assert cfg["tau"] == 0.2 and cfg["weights"] == "random" and cfg["backprop_dtype"] == "float32"
    assert "tau" not in Extractor(backbone, "gap").config()


def test_cascade_keeps_exact_regions_of_its_seeds(backbone, image):
    full = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=None, max_side=128, backprop_dtype="float32"))(image)
    ex = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=0.3, max_side=128, cascade_stride=16,
                                                       backprop_dtype="float32"))
    assert ex.coarse_bp.map_stride == 16 and ex.config()["cascade_stride"] == 16
    out = ex(image)
    assert 0 < len(out.regions) <= len(full.regions)
    row = {tuple(s): i for i, s in enumerate(full.regions.seeds.tolist())}
    for seed, box, feat in zip(out.regions.seeds.tolist(), out.regions.boxes, out.features):
        i = row[tuple(seed)]  # each cascade region is the full-map region of its seed
        np.testing.assert_allclose(box, full.regions.boxes[i], rtol=1e-6)
        np.testing.assert_allclose(feat, full.features[i], rtol=1e-5)
    assert "cascade_stride" not in Extractor(backbone, "dasr-star", RegionConfig(max_side=128)).config()
    with pytest.raises(ValueError, match="cascade_stride needs NMS"):
        RegionConfig(nms_iou=None, cascade_stride=16)


def test_authors_rule_is_recorded_and_runs_its_pipeline(backbone, image):
    """The store records ``rule`` only when it is not the paper's (old configs stay valid); the
    authors' rule takes its own seeds (no border row/col), backprop and 95th-percentile threshold,
    and by default their code's strided convolutions (exact) and resize (truncate-bilinear)."""
    from dasr.regions import activation_map, find_seeds
    from dasr.regions.seeds import authors_peaks

    paper = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32"))
    assert "rule" not in paper.config()
    ex = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32", rule="authors"))
    assert ex.config()["rule"] == "authors" and ex.bp.rule == "authors"
    differ = {k: v for k, v in ex.config().items() if paper.config().get(k) != v}
    assert differ == {"rule": "authors", "strided_conv": "exact", "resize": "truncate-bilinear"}
    assert paper.config()["strided_conv"] == "window" and "resize" not in paper.config()
    # An explicit choice still wins over the rule's default.
    window = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, rule="authors", strided_conv="window"))
    assert window.config()["strided_conv"] == "window" and window.bp.strided_conv == "window"
    assert ex.bp.strided_conv == "exact"
    out = ex(image, keep_maps=True)
    x, scale, size, acts = ex.forward(image)
    amap = activation_map(np.asarray(acts[backbone.top_layer]))
    seeds, _ = authors_peaks(amap, mean_filter=False)
    assert set(map(tuple, out.regions.seeds.tolist())) <= set(map(tuple, seeds.tolist()))
    assert len(out.regions) > 0
    # at most ~5% of each map kept (ties at the percentile aside), unlike τ = 0.1 of the maximum
    assert (out.regions.kept_fraction <= 0.06).all() and (out.regions.kept_fraction > 0).all()
    with pytest.raises(ValueError, match="seed rule"):
        Extractor(backbone, "dasr", RegionConfig(method="dasr-star", rule="authors"))
    assert len(find_seeds(amap, "dasr", rule="authors")[0]) <= len(seeds)


def eq4_boxes_by_hand(maps: np.ndarray, tau: float, cell: float) -> np.ndarray:
    """Eq. 4, written out: the cells at or above tau x the peak, each a uniform cell x cell square;
    the box is the centroid +- 2 standard deviations per axis, inside the map."""
    boxes = []
    for m in maps.astype(np.float64):
        rows, cols = np.nonzero((m >= tau * m.max()) & (m > 0))
        x, y = (cols + 0.5) * cell, (rows + 0.5) * cell
        sx, sy = (np.sqrt(v.var() + cell**2 / 12) for v in (x, y))
        box = [x.mean() - 2 * sx, y.mean() - 2 * sy, x.mean() + 2 * sx, y.mean() + 2 * sy]
        boxes.append(np.clip(box, 0, [m.shape[1] * cell, m.shape[0] * cell] * 2))
    return np.array(boxes)


def test_stop_stride_16_boxes_are_network_input_pixels(backbone, image):
    """Stopped at stride 16 the maps hold one value per 16 x 16 pixels; the boxes are Eq. 4 on them
    with 16-pixel cells, in network-input pixels, then scaled back to the image."""
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128, stop_stride=16,
                                                  backprop_dtype="float32"))
    assert ex.bp.map_stride == 16 and ex.config()["stop_stride"] == 16
    out = ex(image, keep_maps=True)
    x, scale, (w, h), _ = ex.forward(image)
    assert out.maps.shape[1:] == (-(-x.shape[1] // 16), -(-x.shape[2] // 16))
    boxes = eq4_boxes_by_hand(out.maps, 0.1, 16.0)
    want = np.clip(np.clip(boxes, 0, [w, h, w, h]) / scale, 0, [image.shape[1], image.shape[0]] * 2)
    np.testing.assert_allclose(out.regions.boxes, want, rtol=1e-5, atol=1e-3)
    assert out.regions.boxes[:, 2].max() > 16 / scale  # not cells mistaken for pixels


def test_contrastive_is_recorded_only_when_on(backbone, image):
    paper = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32"))
    ex = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32", contrastive=True))
    assert "contrastive" not in paper.config() and paper.bp.dual is None
    assert ex.config()["contrastive"] is True and ex.bp.dual is not None
    assert {k: v for k, v in ex.config().items() if k != "contrastive"} == paper.config()
    with pytest.raises(ValueError, match="paper's rule only"):
        RegionConfig(rule="authors", contrastive=True)


# ------------------------------------------------------------------ boxes computed on the device
# ``Extractor(boxes_on_device=True)`` is what a GPU gets by default; here it is forced on the CPU
# and compared with the default CPU path (maps brought back, float64 NumPy moments): the same
# seeds and regions, boxes to 1e-3 pixel, the same features.


@pytest.fixture(scope="module")
def two_objects():
    rng = np.random.default_rng(4)
    img = np.full((120, 200, 3), 80, np.uint8)
    img[10:70, 20:90] = rng.integers(0, 255, (60, 70, 3))
    img[60:115, 120:190] = rng.integers(90, 255, (55, 70, 3))
    return img


@pytest.mark.parametrize("method, rule, extra", [
    ("dasr-star", "paper", {}),
    ("dasr", "paper", {"weighted_moments": True, "tau": 0.3}),
    ("dasr-star", "authors", {"max_side": 256}),  # its peaks skip the border cells: a larger map
    ("dasr-star", "paper", {"cascade_stride": 8, "nms_iou": 0.3}),  # the cascade needs NMS
    ("dasr-star", "paper", {"stop_stride": 16}),  # maps one value per 16 pixels
    ("dasr-star", "paper", {"contrastive": True}),
    ("dasr-star", "paper", {"contrastive": True, "stop_stride": 16}),
])
def test_device_boxes_equal_numpy_boxes(backbone, two_objects, method, rule, extra) -> None:
    # seed_chunk 3: several chunks, the last one padded with zero seeds; no NMS: every seed's box.
    region = RegionConfig(method=method, backprop_dtype="float32", seed_chunk=3, rule=rule,
                          **{"max_side": 160, "nms_iou": None, **extra})
    on_host = Extractor(backbone, method, region, boxes_on_device=False)(two_objects)
    on_device = Extractor(backbone, method, region, boxes_on_device=True)(two_objects)
    assert len(on_host.regions) >= 2
    np.testing.assert_array_equal(on_device.regions.seeds, on_host.regions.seeds)
    np.testing.assert_allclose(on_device.regions.boxes, on_host.regions.boxes, atol=1e-3)
    np.testing.assert_allclose(on_device.regions.ellipses[:, :4], on_host.regions.ellipses[:, :4], atol=1e-3)
    np.testing.assert_allclose(on_device.regions.kept_fraction, on_host.regions.kept_fraction, atol=1e-6)
    np.testing.assert_allclose(on_device.features, on_host.features, rtol=1e-5, atol=1e-6)


def test_cpu_default_keeps_maps_on_host(backbone) -> None:
    # No GPU here: the default is today's path, whose stores are bit-identical to earlier ones.
    assert Extractor(backbone, "dasr-star", RegionConfig(max_side=64)).boxes_on_device is False


def test_figures_still_get_maps_on_device_path(backbone, two_objects) -> None:
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128), boxes_on_device=True)
    out = ex(two_objects, keep_maps=True)
    assert out.maps is not None and out.maps.shape[0] == len(out.regions)


# --------------------------------------------------------------------------- many images per step
# Images of two network-input shapes (two buckets; the bucket of three is padded to four with a
# blank image); their seeds share the backprop chunks.  The batched results must be the
# per-image ones up to round-off (assert_same_extraction).


@pytest.fixture(scope="module")
def mixed_images(two_objects):
    rng = np.random.default_rng(7)
    same_shape = [two_objects, np.clip(two_objects.astype(int) + 40, 0, 255).astype(np.uint8),
                  rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)]
    other = np.full((150, 100, 3), 30, np.uint8)
    other[20:90, 10:80] = rng.integers(0, 255, (70, 70, 3))
    return [same_shape[0], other, same_shape[1], same_shape[2]]


def chunk_images(ex: Extractor) -> list[int]:
    """Records, per backprop step of ``ex``, how many different images its seed rows belong to."""
    seen: list[int] = []
    for name in ("backprop", "backprop_ellipses"):
        real = getattr(ex.bp, name)

        def spy(state, probs, image=None, *args, _real=real, **kwargs):
            seen.append(0 if image is None else len(np.unique(np.asarray(image)[np.asarray(probs).any((1, 2, 3))])))
            return _real(state, probs, image, *args, **kwargs)

        setattr(ex.bp, name, spy)
    return seen


def assert_same_extraction(got, want) -> None:
    """The same extraction up to round-off: a batch of another shape runs other kernel blockings
    (tests/tolerances.py: boxes to one input pixel, activations to the forward pass's bound)."""
    assert got.scale == want.scale and got.input_size == want.input_size
    np.testing.assert_array_equal(got.regions.seeds, want.regions.seeds)
    assert_boxes_close(got.regions.boxes, want.regions.boxes, want.scale)
    assert_boxes_close(got.regions.ellipses[:, :4], want.regions.ellipses[:, :4], want.scale, what="ellipses")
    assert_close_to_max(got.regions.scores, want.regions.scores, forward_bound(depth=RESNET50_TOP_DEPTH),
                        what="scores")
    assert_close_to_max(got.features, want.features, forward_bound(), axis=1, what="features")


@pytest.mark.parametrize("method, rule, on_device", [
    ("dasr-star", "paper", True),
    ("dasr", "paper", False),
    ("dasr-star", "authors", False),
    ("dasr", "authors", True),
])
def test_batch_equals_image_by_image(backbone, mixed_images, method, rule, on_device) -> None:
    # The authors' peaks skip the border cells: a larger input.
    region = RegionConfig(method=method, backprop_dtype="float32", seed_chunk=8, rule=rule,
                          max_side=224 if rule == "authors" else 160)
    ex = Extractor(backbone, method, region, boxes_on_device=on_device)
    one_by_one = [ex(image) for image in mixed_images]
    steps = chunk_images(ex)
    batched = ex.extract_batch(mixed_images)
    assert max(steps) >= 2  # a chunk held seeds of several images
    assert sum(len(e.regions) for e in one_by_one) >= 4
    for got, want in zip(batched, one_by_one):
        assert_same_extraction(got, want)


@pytest.mark.parametrize("method, extra", [
    ("dasr-star", {"cascade_stride": 8}), ("dasr-star", {"contrastive": True}), ("fixed-box", {}), ("gap", {}),
])
def test_batch_equals_image_by_image_for_the_other_paths(backbone, mixed_images, method, extra) -> None:
    region = RegionConfig(method="dasr-star", backprop_dtype="float32", seed_chunk=5, max_side=128, **extra)
    ex = Extractor(backbone, method, region, boxes_on_device=True)
    for got, want in zip(ex.extract_batch(mixed_images), [ex(image) for image in mixed_images]):
        assert_same_extraction(got, want)


def test_batch_keeps_maps(backbone, mixed_images) -> None:
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128, backprop_dtype="float32"))
    for got, want in zip(ex.extract_batch(mixed_images, keep_maps=True),
                         [ex(image, keep_maps=True) for image in mixed_images]):
        np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5, atol=1e-6 * want.maps.max())
