"""One image in, regions and their features out: the whole per-image DASR pipeline.

Resize (long side ``max_side``) -> caffe preprocessing -> ONE forward pass -> seeds on the
activation map -> batched probability backprop -> ellipses/boxes -> NMS -> average pooling of
the feature layer inside each box.  The global baselines (GAP/SPoC, MAC, R-MAC, CroW) share the
forward pass and the feature layer, and give one whole-image "region" per image, so that an
index of either kind is searched the same way.

Several images per step (:meth:`Extractor.extract_inputs`, what the collection loop uses where a
GPU is visible): images of the same network-input shape share one forward pass, and their seeds
share the backprop's fixed-size chunks (:mod:`dasr.model.chunks`); images of different shapes
go in separate buckets (never padded to a common shape, so no padding leaks into the seeds,
moments or pooling).  The results are the per-image ones up to float rounding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dasr.errors import InputError
from dasr import __version__
from dasr.features import pooling
from dasr.features.methods import GLOBAL_METHODS, REGION_METHODS
from dasr.features.options import DEFAULT_FIXED_BOX_SIDE, check_options
from dasr.features.whitening import load_whitening, whitening_identity
from dasr.model.architectures import DEFAULT_FEATURE_LAYER
from dasr.model.backbone import Backbone
from dasr.model import chunks
from dasr.model.backprop import ProbabilityBackprop
from dasr.model.device import boxes_on_device_here, resolve_dtype
from dasr.io.images import IMAGENET_BGR_MEAN, preprocess_caffe
from dasr.io.resize import resize_for_network
from dasr.regions.ellipse import AUTHORS_PERCENTILE
from dasr.regions import (Regions, RegionConfig, activation_map, authors_integer_boxes, ellipses_from_maps,
                          find_seeds, fixed_boxes, nms)

# The network needs this much input for its stride-32 top layer to have at least one cell.
MIN_INPUT_SIDE = 32


@dataclass
class Extraction:
    """What one image gives.

    Attributes:
      regions: boxes etc. in original image coordinates.
      features: (n, C) float32 pooled features (raw, not normalised).
      scale: network-input pixels per original pixel.
      input_size: (width, height) of the resized image (before any padding).
      activation: (h, w) activation map X̄.
      maps: (S, H, W) probability maps of the kept regions' seeds (only with ``keep_maps``).
    """

    regions: Regions
    features: np.ndarray
    scale: float
    input_size: tuple[int, int]
    activation: np.ndarray
    maps: np.ndarray | None = None


@dataclass
class NetworkInput:
    """One image made ready for the network: what a batch of images keeps of each.

    Attributes:
      x: (1, H', W', 3) float32 network input (:func:`prepare_input`).
      scale: network-input pixels per original pixel.
      size: (width, height) of the resized image (before any padding).
      original: (width, height) of the original image.
    """

    x: np.ndarray
    scale: float
    size: tuple[int, int]
    original: tuple[int, int]


def prepare_input(image_rgb: np.ndarray, max_side: int, resize: str = "round-area"
                  ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resizes (by the ``resize`` rule, :mod:`dasr.io.resize`) and preprocesses; pads images
    thinner than the network's stride.

    Returns:
      (x (1, H', W', 3) float32, scale, (width, height) of the resized image).  Padding (bottom
      and right, with the preprocessed value 0 = the ImageNet mean colour) only happens when a
      side is below :data:`MIN_INPUT_SIDE`; boxes are clipped to the real image later.
    """
    resized, scale = resize_for_network(image_rgb, max_side, resize)
    h, w = resized.shape[:2]
    x = preprocess_caffe(resized)
    if h < MIN_INPUT_SIDE or w < MIN_INPUT_SIDE:
        x = np.pad(x, ((0, max(0, MIN_INPUT_SIDE - h)), (0, max(0, MIN_INPUT_SIDE - w)), (0, 0)))
    return x[None], scale, (w, h)


class Extractor:
    """Regions and features for images, with one backbone and one configuration.

    Args:
      backbone: the network (see :func:`dasr.model.backbone.build_backbone`).
      method: ``dasr``, ``dasr-star``, ``fixed-box`` (the control: DASR* seeds and NMS, but every
        box a fixed square centred on its seed) or a global baseline ``gap|mac|rmac|crow|gem``.
      region: the region configuration (τ, β, ...); None: the method's defaults.  Its seed rule
        must be the method's (:func:`~dasr.features.methods.seed_rule`).
      feature_layer: layer whose map is pooled; default Block4_unit1 (``conv5_block1_out``).
      pooling: ``avg`` (paper), ``max`` or ``gem``.
      fixed_box_side: side in network-input pixels of the ``fixed-box`` control's boxes.
      rmac_whitening: ``rmac`` only: a whitening file learned on R-MAC region vectors of another
        collection (:func:`dasr.features.rmac_whitening.learn_rmac_whitening`), applied to each
        region before the sum (Tolias et al.); None: the regions are summed unwhitened.

    Raises:
      InputError: a bad option, or a whitening file that cannot be read.
    """

    def __init__(self, backbone: Backbone, method: str = "dasr-star", region: RegionConfig | None = None,
                 feature_layer: str | None = None, pooling: str = "avg", fixed_box_side: float = DEFAULT_FIXED_BOX_SIDE,
                 boxes_on_device: bool | None = None, rmac_whitening: str | None = None):
        region = check_options(method, pooling, region, rmac_whitening, fixed_box_side)
        self.backbone = backbone
        self.method = method
        # Resolved once, so that the store records the dtype really used.
        self.region = dataclasses.replace(region, backprop_dtype=resolve_dtype(region.backprop_dtype))
        self.feature_layer = feature_layer or DEFAULT_FEATURE_LAYER[backbone.name]
        self.stride = backbone.stride(self.feature_layer)
        # Seeds are cells of the top layer, whose stride need not be the feature layer's.
        self.seed_stride = backbone.stride(backbone.top_layer)
        self.pooling = pooling
        self.fixed_box_side = float(fixed_box_side)
        self.rmac_whitening_file = rmac_whitening
        self.rmac_whitening = load_whitening(rmac_whitening)[0] if rmac_whitening is not None else None
        self.boxes_on_device = boxes_on_device_here() if boxes_on_device is None else boxes_on_device
        self.bp = self._backprop(self.region.stop_stride,
                                 (self.feature_layer,) if self.feature_layer != backbone.top_layer else ())
        self.coarse_bp = None
        if self.region.cascade_stride > 1 and method in ("dasr", "dasr-star"):
            self.coarse_bp = self._backprop(self.region.cascade_stride)

    def _backprop(self, stop_stride: int, extra_outputs: tuple[str, ...] = ()) -> ProbabilityBackprop:
        """The region configuration's backprop, stopped at ``stop_stride``."""
        r = self.region
        return ProbabilityBackprop(
            self.backbone.model, self.backbone.top_layer, input_offset=IMAGENET_BGR_MEAN,
            input_rule=r.input_rule, strided_conv=r.strided_conv, stop_stride=stop_stride, dtype=r.backprop_dtype,
            rule=r.rule, contrastive=r.contrastive, extra_outputs=extra_outputs, add_rule=r.add_rule,
            maxpool_rule=r.maxpool_rule)

    def config(self) -> dict:
        """The flat configuration every store records (and checks on reopening)."""
        cfg = {
            "backbone": self.backbone.name,
            "weights": self.backbone.weights_id,
            "method": self.method,
            "feature_layer": self.feature_layer,
            "pooling": self.pooling,
            "max_side": self.region.max_side,
            "dasr_version": __version__,
        }
        if self.method in REGION_METHODS:
            cfg.update(self.region.recorded())
            if self.method == "fixed-box":
                cfg["fixed_box_side"] = self.fixed_box_side
        if self.rmac_whitening is not None:
            cfg["rmac_whitening"] = str(self.rmac_whitening_file)
            cfg["rmac_whitening_digest"] = whitening_identity(self.rmac_whitening)
        return cfg

    # --------------------------------------------------------------------- pieces
    def forward(self, image_rgb: np.ndarray):
        x, scale, size = prepare_input(image_rgb, self.region.max_side, self.region.resize)
        acts = self.bp.forward(x)
        return x, scale, size, acts

    def feature_map(self, acts) -> np.ndarray:
        return np.asarray(acts[self.feature_layer][0])

    def seed_maps(self, acts, seeds: np.ndarray, bp: ProbabilityBackprop | None = None,
                  image: np.ndarray | None = None) -> np.ndarray:
        """(S, H, W) probability maps of ``seeds``, back-propagated in chunks (by ``bp``, default the full one).

        ``image``: None (``acts`` of one image) or (S,) each seed's row in the batch ``acts``.
        """
        bp = bp or self.bp
        return chunks.seed_maps(bp, bp.prepare(acts), acts[self.backbone.top_layer], seeds,
                                chunk=self.region.seed_chunk, rule=self.region.rule, image=image)

    def seed_boxes(self, acts, seeds: np.ndarray, bp: ProbabilityBackprop | None = None,
                   image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each seed's region before NMS, computed on the device with its map (never brought back).

        The same Eq. 4 as :meth:`boxes_from_maps` on :meth:`seed_maps` (to float32 rounding, see
        :mod:`dasr.model.moments`), in fixed-size chunks (:func:`dasr.model.chunks.seed_boxes`).

        Args:
          acts, seeds, bp, image: as in :meth:`seed_maps`.

        Returns:
          (boxes (S, 4) in network-input pixels, ellipses (S, 5), kept (S,)); not clipped to the
          resized image (the caller clips, as for :meth:`boxes_from_maps`).
        """
        bp = bp or self.bp
        return chunks.seed_boxes(bp, bp.prepare(acts), acts[self.backbone.top_layer], seeds,
                                 chunk=self.region.seed_chunk, rule=self.region.rule, tau=self.region.tau,
                                 weighted=self.region.weighted_moments,
                                 percentile=AUTHORS_PERCENTILE if self.region.rule == "authors" else None,
                                 image=image)

    def _seed_regions(self, acts, seeds: list[np.ndarray], bp: ProbabilityBackprop, keep_maps: bool,
                      batched: bool) -> list[tuple]:
        """Per image, (boxes, ellipses, kept, maps or None) of its seeds, by the device or the host path.

        ``seeds``: one (S_i, 2) array per image of ``acts``; ``batched``: ``acts`` is a batch
        and every image's seeds go through the same chunks.  Boxes in network-input pixels,
        not clipped.
        """
        counts = [len(s) for s in seeds]
        every = np.concatenate(seeds) if batched else seeds[0]
        image = np.repeat(np.arange(len(seeds), dtype=np.int32), counts) if batched else None
        maps = None
        if self.boxes_on_device and not keep_maps:
            found = self.seed_boxes(acts, every, bp, image)
        else:
            maps = self.seed_maps(acts, every, bp, image)
            found = ellipses_from_maps(maps, self.region.tau, self.region.weighted_moments, bp.map_stride,
                                       self.region.rule)
        cuts = np.cumsum(counts)[:-1]
        per_image = [np.split(a, cuts) for a in (*found, maps if maps is not None else np.zeros(len(every)))]
        return [(b, e, k, m if maps is not None else None) for b, e, k, m in zip(*per_image)]

    def cascade_survivors(self, acts, seeds: np.ndarray, scores: np.ndarray, scale: float) -> np.ndarray:
        """Indices (ascending) of the seeds whose coarse boxes survive NMS (the cascade's first stage)."""
        return self._cascade(acts, [seeds], [scores], [scale], batched=False)[0]

    def _cascade(self, acts, seeds: list[np.ndarray], scores: list[np.ndarray], scales: list[float],
                 batched: bool) -> list[np.ndarray]:
        """:meth:`cascade_survivors` of each image of ``acts`` (see :meth:`_seed_regions`)."""
        out = []
        for (boxes, _, kept, _), sc, scale in zip(self._seed_regions(acts, seeds, self.coarse_bp, False, batched),
                                                  scores, scales):
            found = np.flatnonzero(kept > 0)
            out.append(np.sort(found[nms(boxes[found] / scale, sc[found], self.region.nms_iou)]))
        return out

    def boxes_from_maps(self, maps: np.ndarray, input_size: tuple[int, int], tau: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each seed's region, before NMS, from its :meth:`seed_maps` map (Eq. 4 at τ).

        Args:
          maps: (S, H, W) maps of the full backprop (one value per ``bp.map_stride`` pixels).
          input_size: (width, height) of the resized image; boxes are clipped to it, which drops
            any padding of thin images.
          tau: the threshold (None: the configuration's τ; another value: e.g. a τ sweep).

        Returns:
          (boxes (S, 4) in network-input pixels, ellipses (S, 5), kept (S,): > 0 where the map
          is not all zero), as :func:`dasr.regions.ellipses_from_maps`.
        """
        boxes, ellipses, kept = ellipses_from_maps(maps, self.region.tau if tau is None else tau,
                                                   self.region.weighted_moments, self.bp.map_stride,
                                                   self.region.rule)
        w, h = input_size
        return np.clip(boxes, 0, [w, h, w, h]), ellipses, kept

    def pool(self, fmap: np.ndarray, boxes_input: np.ndarray) -> np.ndarray:
        """Pools ``fmap`` inside boxes given in network-input pixels (:func:`dasr.features.pooling.pool_boxes`)."""
        return pooling.pool_boxes(fmap, boxes_input, self.stride, self.pooling)

    # --------------------------------------------------------------------- whole images
    def network_input(self, image_rgb: np.ndarray) -> NetworkInput:
        """The image made ready for the network (all a batch keeps of it)."""
        x, scale, size = prepare_input(image_rgb, self.region.max_side, self.region.resize)
        return NetworkInput(x, scale, size, (int(image_rgb.shape[1]), int(image_rgb.shape[0])))

    def __call__(self, image_rgb: np.ndarray, keep_maps: bool = False) -> Extraction:
        """Regions and features of one RGB uint8 image."""
        return self._extract_bucket([self.network_input(image_rgb)], keep_maps)[0]

    def extract_batch(self, images: list[np.ndarray], keep_maps: bool = False) -> list[Extraction]:
        """Regions and features of several RGB uint8 images (:meth:`extract_inputs`)."""
        return self.extract_inputs([self.network_input(image) for image in images], keep_maps)

    def extract_inputs(self, inputs: list[NetworkInput], keep_maps: bool = False) -> list[Extraction]:
        """Regions and features of several images, many per network step.

        The images are bucketed by network-input shape; each bucket is one forward pass (its
        batch padded with blank images to a power of two, so that a compiling backend sees few
        batch sizes), and the seeds of all its images share fixed-size backprop chunks.  The
        results are the per-image ones (:meth:`__call__`) up to float rounding.

        Args:
          inputs: :meth:`network_input` of each image.
          keep_maps: also return each region's probability map.

        Returns:
          One :class:`Extraction` per input, in order.
        """
        out: list[Extraction | None] = [None] * len(inputs)
        buckets: dict[tuple, list[int]] = {}
        for i, inp in enumerate(inputs):
            buckets.setdefault(inp.x.shape, []).append(i)
        for rows in buckets.values():
            for i, extraction in zip(rows, self._extract_bucket([inputs[i] for i in rows], keep_maps, batched=True)):
                out[i] = extraction
        return out

    def _extract_bucket(self, inputs: list[NetworkInput], keep_maps: bool, batched: bool = False
                        ) -> list[Extraction]:
        """One forward pass for ``inputs`` (one shape); ``batched=False``: one image, today's calls."""
        x = inputs[0].x
        if batched:
            blank = [np.zeros_like(x)] * (chunks.padded_batch(len(inputs)) - len(inputs))
            x = np.concatenate([inp.x for inp in inputs] + blank)
        acts = self.bp.forward(x)
        top, fmaps = np.asarray(acts[self.backbone.top_layer]), np.asarray(acts[self.feature_layer])
        amaps = [activation_map(top[i]) for i in range(len(inputs))]
        if self.method in GLOBAL_METHODS:
            return [self._global(inp, amap, fmap) for inp, amap, fmap in zip(inputs, amaps, fmaps)]
        seeds, scores = map(list, zip(*(find_seeds(amap, self.region.method, self.region.max_seeds,
                                                   self.region.rule) for amap in amaps)))
        if self.method == "fixed-box":
            found = [(*fixed_boxes(s, self.seed_stride, self.fixed_box_side), np.zeros(len(s), np.float32), None)
                     for s in seeds]
        else:
            if self.coarse_bp is not None and any(len(s) for s in seeds):
                survivors = self._cascade(acts, seeds, scores, [inp.scale for inp in inputs], batched)
                seeds = [s[k] for s, k in zip(seeds, survivors)]
                scores = [s[k] for s, k in zip(scores, survivors)]
            found = self._seed_regions(acts, seeds, self.bp, keep_maps, batched)
        return [self._finish(inp, amap, fmap, s, sc, *f, keep_maps)
                for inp, amap, fmap, s, sc, f in zip(inputs, amaps, fmaps, seeds, scores, found)]

    def _global_descriptor(self, fmap: np.ndarray) -> np.ndarray:
        """The method's one vector for a (part of a) feature map."""
        if self.rmac_whitening is not None and len(self.rmac_whitening["mean"]) != fmap.shape[-1]:
            raise InputError(f"{self.rmac_whitening_file}: whitens {len(self.rmac_whitening['mean'])}-d region "
                             f"vectors, but {self.feature_layer} has {fmap.shape[-1]} channels")
        return pooling.global_descriptor(fmap, self.method, self.rmac_whitening)

    def rmac_region_vectors(self, image_rgb: np.ndarray) -> np.ndarray:
        """(R, C) the l2-normalised R-MAC region vectors of an image's valid feature map
        (:func:`~dasr.features.pooling.rmac_region_vectors`): what an R-MAC whitening learns on."""
        x, scale, size, acts = self.forward(image_rgb)
        return pooling.rmac_region_vectors(pooling.valid_part(self.feature_map(acts), size, self.stride))

    def _global(self, inp: NetworkInput, amap: np.ndarray, fmap: np.ndarray) -> Extraction:
        """A global baseline's one whole-image region."""
        vec = self._global_descriptor(pooling.valid_part(fmap, inp.size, self.stride))
        box = np.array([[0, 0, *inp.original]], np.float32)
        regions = Regions(box, np.ones(1, np.float32), np.zeros((1, 2), np.int32),
                          np.zeros((1, 5), np.float32), np.ones(1, np.float32))
        return Extraction(regions, vec[None].astype(np.float32), inp.scale, inp.size, amap)

    def _finish(self, inp: NetworkInput, amap: np.ndarray, fmap: np.ndarray, seeds: np.ndarray,
                scores: np.ndarray, boxes: np.ndarray, ellipses: np.ndarray, kept: np.ndarray,
                maps: np.ndarray | None, keep_maps: bool) -> Extraction:
        """One image's regions from its seeds' boxes (network-input pixels): clip, drop, NMS, pool."""
        w, h = inp.size
        boxes = np.clip(boxes, 0, [w, h, w, h])
        if self.method == "fixed-box":
            boxes = boxes.astype(np.float32)
        regions = Regions(boxes, scores, seeds, ellipses.astype(np.float32), kept)
        if self.method != "fixed-box":
            # A seed whose map is all zero (e.g. a black image: no pixel carries any
            # probability) localises nothing: it is dropped rather than kept as an empty box.
            found = np.flatnonzero(kept > 0)
            regions = regions.select(found)
            maps = maps[found] if maps is not None else None
        # Back to the original image's coordinates (rounding the resized size can overshoot);
        # the features are pooled on the network-input boxes.
        orig_w, orig_h = inp.original
        if self.region.integer_boxes:
            # As the authors' code: whole resized pixels, then int(x * rate), rate = long side / max_side.
            boxes_input = authors_integer_boxes(regions.ellipses, inp.size)
            original = np.trunc(boxes_input * (max(orig_w, orig_h) / self.region.max_side))
        else:
            boxes_input = regions.boxes
            original = boxes_input / inp.scale
        regions.boxes = np.clip(original, 0, [orig_w, orig_h, orig_w, orig_h]).astype(np.float32)
        regions.ellipses = regions.ellipses.copy()
        regions.ellipses[:, :4] /= inp.scale
        nms_iou = self.region.nms_iou
        if nms_iou is not None and len(regions):
            # On the stored (original-coordinate) boxes and scores, so that a store with NMS is
            # exactly the kept rows of the same store without it (see dasr.store.derive).
            keep = nms(regions.boxes, regions.scores, nms_iou)
            regions = regions.select(keep)
            boxes_input = boxes_input[keep]
            maps = maps[keep] if maps is not None else None
        features = self.pool(fmap, boxes_input)
        return Extraction(regions, features, inp.scale, inp.size, amap, maps if keep_maps else None)

    def describe_box(self, image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The feature of a query box (original image coordinates), pooled like a region's."""
        if self.method in GLOBAL_METHODS:
            x, scale, (w, h), acts = self.forward(image_rgb)
            fmap = self.feature_map(acts)
            b = np.asarray(box, np.float64) * scale
            cells = pooling.boxes_to_cells(b[None], self.stride, fmap.shape[:2])[0]
            r0, r1, c0, c1 = (int(v) for v in cells)
            return self._global_descriptor(fmap[r0:r1, c0:c1]).astype(np.float32)
        return self.describe_boxes(image_rgb, np.asarray(box, np.float32)[None])[0]

    def describe_boxes(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Features of boxes (original image coordinates) on one forward pass, no backprop.

        Re-pools a store's regions on another layer (see :mod:`dasr.store.derive`): the boxes do not
        depend on the feature layer.

        Args:
          image_rgb: the image the boxes belong to.
          boxes: (n, 4) x1, y1, x2, y2 in its pixels.

        Returns:
          (n, C) float32 raw features.
        """
        x, scale, (w, h), acts = self.forward(image_rgb)
        return self.pool(self.feature_map(acts), np.asarray(boxes, np.float64).reshape(-1, 4) * scale)

