"""Option groups shared by several subcommands, the value types with their ranges, and the
one translation of region options into an :class:`~dasr.features.spec.ExtractorSpec`.

Every numeric option has a range, checked by argparse before any work (a bad value is one line
and exit code 2).
"""

from __future__ import annotations

import argparse
import math

from dasr.distributed.plan import DEFAULT_SHARD_SIZE
from dasr.features.methods import ALL_METHODS
from dasr.features.options import DEFAULT_FIXED_BOX_SIDE
from dasr.features.pooling import POOLINGS
from dasr.features.spec import BACKBONES, ExtractorSpec
from dasr.regions import METHOD_DEFAULT
from dasr.regions.config import (ADD_RULES, INPUT_RULES, MAXPOOL_RULES, RESIZE_RULES, RULE_DEFAULT, RULES,
                                 STRIDED_CONV_RULES)
from dasr.search.region_index import DEFAULT_CANDIDATES, INDEX_KINDS

# ----------------------------------------------------------------------------- value types
def _number(text: str, kind: type, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise argparse.ArgumentTypeError(f"{text} must be {'>' if lo_open else '>='} {lo:g}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise argparse.ArgumentTypeError(f"{text} must be {'<' if hi_open else '<='} {hi:g}")
    return value


def int_at_least(lo: int):
    def parse(text: str) -> int:
        return _number(text, int, lo, None, False, False)

    parse.__name__ = f"integer >= {lo}"
    return parse


def float_between(lo: float, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    def parse(text: str) -> float:
        return _number(text, float, lo, hi, lo_open, hi_open)

    parse.__name__ = "number"
    return parse


POSITIVE_INT = int_at_least(1)


# ----------------------------------------------------------------------------- option groups
def add_backbone_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="resnet50", choices=BACKBONES, help="the ImageNet classifier")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (cache, Keras download, npm export), 'random' (an untrained seeded "
                        "network) or a .weights.h5 path (used as given, never replaced)")


def add_index_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that searches an index (``search``, ``serve``)."""
    p.add_argument("--store", "--index", dest="store", required=True,
                   help="the region store to search (dasr extract --out; --index is its older spelling)")
    p.add_argument("--pca", default="auto",
                   help="auto (the one whitening file next to the index, if any), none, or a whitening file")
    p.add_argument("--weights", default=None,
                   help="the index's weights file, when they are not the cached ImageNet ones")


def add_region_index_options(p: argparse.ArgumentParser) -> None:
    """``--index-kind`` / ``--candidates``: search through a store's region index (``search``, ``evaluate``)."""
    p.add_argument("--index-kind", default="exact", choices=("exact", *INDEX_KINDS),
                   help="exact: every region (the reference, default); else the store's index of that kind "
                        "(dasr index build), its candidates re-ranked exactly")
    p.add_argument("--candidates", type=POSITIVE_INT, default=DEFAULT_CANDIDATES,
                   help=f"regions re-ranked exactly per query with --index-kind (default {DEFAULT_CANDIDATES})")


def add_region_options(p: argparse.ArgumentParser) -> None:
    """The extractor's options (:class:`~dasr.features.spec.ExtractorSpec`)."""
    add_backbone_options(p)
    p.add_argument("--method", default="dasr-star", choices=ALL_METHODS,
                   help="regions (dasr, dasr-star, fixed-box) or a global baseline (one whole-image region)")
    p.add_argument("--layer", default=None, help="feature layer (default conv5_block1_out / block5_conv3)")
    p.add_argument("--pooling", default="avg", choices=POOLINGS, help="pooling of the feature map in a box")
    p.add_argument("--tau", type=float_between(0.0, 1.0, hi_open=True), default=0.1,
                   help="threshold on the max-normalised map (τ, in [0, 1))")
    p.add_argument("--beta", type=float_between(0.0, 1.0, lo_open=True), default=None,
                   help="NMS IoU (β, in (0, 1]); default 0.3 for dasr-star, no NMS for dasr")
    p.add_argument("--no-nms", action="store_true", help="no NMS, whatever the method")
    p.add_argument("--weighted-moments", action="store_true", help="weight the ellipse moments by the map")
    p.add_argument("--max-side", type=int_at_least(32), default=512, help="long side of the network input")
    p.add_argument("--input-rule", default="raw", choices=INPUT_RULES,
                   help="what plays A in the last step to the pixels (see dasr.model.backprop)")
    p.add_argument("--stop-stride", type=POSITIVE_INT, default=1,
                   help="fast mode: stop the backprop at this stride (1 = pixels, the paper)")
    p.add_argument("--cascade-stride", type=POSITIVE_INT, default=1,
                   help="fast mode: choose the seeds that survive NMS on maps stopped at this stride, "
                        "then compute only their full maps (1 = off, the paper)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="backprop compute type (auto: bfloat16 where the hardware computes it)")
    p.add_argument("--strided-conv", default=RULE_DEFAULT, choices=STRIDED_CONV_RULES,
                   help="default %(default)s (window for paper, exact for authors, as their code): strided 1x1 "
                        "convolutions in the backprop: their 2x2 window, or the exact sampled cell")
    p.add_argument("--resize", default=RULE_DEFAULT, choices=RESIZE_RULES,
                   help="default %(default)s (for paper: round-area, the short side rounded, area filter "
                        "when shrinking; for authors: their resize, the short side truncated, Pillow's bilinear)")
    p.add_argument("--add-rule", default="positive-share", choices=ADD_RULES,
                   help="default %(default)s: the paper rule's residual Add: split P by the branches' positive "
                        "parts, by their signed shares of the output (TorchRay), or copy it into both branches")
    p.add_argument("--maxpool-rule", default="window", choices=MAXPOOL_RULES,
                   help="default %(default)s: the paper rule's max pooling: a window of ones (the paper) or "
                        "winner takes all")
    p.add_argument("--integer-boxes", action="store_true",
                   help="cut boxes to whole pixels as the authors' code does (default: continuous boxes)")
    p.add_argument("--seed-chunk", type=POSITIVE_INT, default=16, help="seeds back-propagated together")
    p.add_argument("--max-seeds", type=POSITIVE_INT, default=None,
                   help="at most this many seeds per image, the strongest (default: all, as the paper)")
    p.add_argument("--rule", default="paper", choices=RULES,
                   help="paper: Sections 3.1-3.2 as written; authors: the released code's backprop, "
                        "seeds and 95th-percentile threshold (see dasr.regions.config)")
    p.add_argument("--contrastive", action="store_true",
                   help="beyond the paper: subtract the map obtained through the negated top linear map "
                        "(contrastive excitation backprop, see dasr.model.contrast; paper rule only)")
    p.add_argument("--fixed-box-side", type=float_between(0.0, None, lo_open=True), default=DEFAULT_FIXED_BOX_SIDE,
                   help="box side (network-input pixels) of the fixed-box control")
    p.add_argument("--rmac-whitening", default=None, metavar="FILE",
                   help="--method rmac: whiten each region before the sum with this file (learned by "
                        "dasr whiten-rmac on another collection, as Tolias et al.)")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """``dasr extract --engine ray`` and its pool (:mod:`dasr.distributed`)."""
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process (default); ray: shards on a Ray actor pool, merged into --out "
                        "(needs dasr[ray])")
    p.add_argument("--shard-size", type=POSITIVE_INT, default=DEFAULT_SHARD_SIZE,
                   help=f"--engine ray: the most images per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--workers", type=POSITIVE_INT, default=None,
                   help="--engine ray: shard workers (default: as many as the resources allow)")
    p.add_argument("--cpus-per-worker", type=float_between(0.0, None, lo_open=True), default=1.0,
                   help="--engine ray: CPUs Ray reserves per worker (fractions allowed)")
    p.add_argument("--gpus-per-worker", type=float_between(0.0, None), default=0.0,
                   help="--engine ray: GPUs per worker (1 where the cluster has GPUs)")
    p.add_argument("--ray-address", default=None,
                   help="--engine ray: 'auto' or ray://HOST:PORT joins that cluster (default: a local Ray "
                        "on this machine's resources)")


def spec_from_args(args: argparse.Namespace) -> ExtractorSpec:
    """The extractor the region options ask for."""
    nms_iou = None if args.no_nms else (args.beta if args.beta is not None else METHOD_DEFAULT)
    return ExtractorSpec.from_options(
        method=args.method, backbone=args.backbone, weights=args.weights, feature_layer=args.layer,
        pooling=args.pooling, fixed_box_side=args.fixed_box_side, tau=args.tau, nms_iou=nms_iou,
        weighted_moments=args.weighted_moments, max_side=args.max_side, input_rule=args.input_rule,
        strided_conv=args.strided_conv, stop_stride=args.stop_stride, cascade_stride=args.cascade_stride,
        backprop_dtype=args.dtype, seed_chunk=args.seed_chunk, max_seeds=args.max_seeds, rule=args.rule,
        contrastive=args.contrastive, resize=args.resize, integer_boxes=args.integer_boxes,
        add_rule=args.add_rule, maxpool_rule=args.maxpool_rule, rmac_whitening=args.rmac_whitening)


