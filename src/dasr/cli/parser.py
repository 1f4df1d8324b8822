"""The ``dasr`` command line: every subcommand and its options (the commands: :mod:`dasr.cli.commands`)."""

from __future__ import annotations

import argparse

from dasr import __version__
from dasr.cli import commands as c
from dasr.cli.backend import BACKENDS
from dasr.eval.datasets import BENCHMARKS
from dasr.eval.datasets.common import QUERY_KINDS
from dasr.search.region_index import INDEX_KINDS
from dasr.store.extract import GPU_IMAGES_PER_STEP
from dasr.cli.options import (POSITIVE_INT, add_backbone_options, add_index_options, add_ray_options,
                              add_region_index_options, add_region_options, int_at_least)

DESCRIPTION = ("DASR instance search: salient regions of images by probability backprop in an ImageNet "
               "classifier, region stores, search and evaluation.")


# ----------------------------------------------------------------------------- parser
class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse with :class:`DefaultsFormatter`, for the command and every subcommand; no value
    may be empty (``dasr extract ""`` would otherwise read ``Path("")``, the current folder)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def _get_value(self, action: argparse.Action, arg_string: str):
        # A subcommand's arguments pass through its parser's action here: its own parser checks them.
        if arg_string == "" and action.nargs not in (argparse.PARSER, argparse.REMAINDER):
            raise argparse.ArgumentError(action, "an empty value names nothing; give one")
        return super()._get_value(action, arg_string)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dasr", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"dasr {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also DASR_DEBUG=1)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend of the network and the backprop (default: $KERAS_BACKEND, else "
                             "tensorflow); recorded in every store, which either backend can search")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("weights", help="resolve, convert and cache the ImageNet weights; print their path")
    add_backbone_options(p)
    p.set_defaults(func=c.cmd_weights)

    p = sub.add_parser("classify", help="top-5 ImageNet classes of images (proves the weights are real)")
    add_backbone_options(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--top", type=int_at_least(1), default=5, help="classes shown per image")
    p.set_defaults(func=c.cmd_classify)

    p = sub.add_parser("detect", help="salient regions of images (DASR / DASR*)")
    add_region_options(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--json", help="write the regions as JSON to this file ('-': stdout)")
    p.add_argument("--figure", help="PNG like the paper's Figs. 1/3 (one per image)")
    p.set_defaults(func=c.cmd_detect)

    p = sub.add_parser("extract", help="regions and features of a collection into an HDF5 store (resumable)")
    add_region_options(p)
    p.add_argument("images", help="a folder (searched recursively) or a text file of image paths")
    p.add_argument("--root", help="the stored paths are relative to this folder")
    p.add_argument("--out", required=True, help="store path (.h5)")
    p.add_argument("--shard", help="i/n: only every n-th image starting at i (0-based)")
    p.add_argument("--float16", action="store_true", help="store features as float16")
    p.add_argument("--limit", type=POSITIVE_INT, help="only the first N images")
    p.add_argument("--images-per-step", type=POSITIVE_INT, default=None,
                   help="images through the network together, bucketed by input size (default: "
                        f"{GPU_IMAGES_PER_STEP} where a GPU is visible, else 1; the same regions up to "
                        "float rounding; local engine: Ray workers take their default)")
    p.add_argument("--quiet", action="store_true")
    add_ray_options(p)
    p.set_defaults(func=c.cmd_extract)

    p = sub.add_parser("merge", help="join shard stores into one")
    p.add_argument("shards", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-incomplete", action="store_true",
                   help="merge a shard set with missing shards (with a warning) instead of refusing it")
    p.set_defaults(func=c.cmd_merge)

    p = sub.add_parser("whiten", help="learn a store's PCA-whitening on another collection's store")
    p.add_argument("--store", "--index", dest="store", required=True,
                   help="the store the whitening is for (--index is its older spelling)")
    p.add_argument("--learn-from", required=True, help="store of ANOTHER collection, same configuration")
    p.add_argument("--pca-dim", type=POSITIVE_INT, default=None,
                   help="output dimension (default: every usable component)")
    p.add_argument("--out", help="default <index>.whitening-<source>-<dim>.npz")
    p.set_defaults(func=c.cmd_whiten)

    p = sub.add_parser("whiten-rmac", help="learn R-MAC's region whitening (Tolias et al.) on another collection")
    p.add_argument("images", help="a folder of images of ANOTHER collection than the one to describe")
    add_backbone_options(p)
    p.add_argument("--layer", default=None, help="feature layer (default conv5_block1_out / block5_conv3)")
    p.add_argument("--max-side", type=int_at_least(32), default=512, help="long side of the network input")
    p.add_argument("--pca-dim", type=POSITIVE_INT, default=None,
                   help="output dimension (default: every usable component)")
    p.add_argument("--out", required=True, help="the whitening file (.npz), for extract/evaluate --rmac-whitening")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c.cmd_whiten_rmac)

    p = sub.add_parser("index", help="compressed region indexes of a store (for millions of regions)")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser("build", help="a faiss index of a store's post-processed regions, saved next to it")
    b.add_argument("store")
    b.add_argument("--out", help="default <store>.index-<kind>.npz (where --index-kind finds it)")
    b.add_argument("--kind", default="ivfpq", choices=INDEX_KINDS, help="the faiss index type")
    b.add_argument("--pca", default="auto",
                   help="the search's whitening: auto (the one file next to the store), none, or a file")
    b.add_argument("--bytes-per-region", type=int_at_least(2), default=64,
                   help="PQ code + 8-byte id budget per region (default 64)")
    b.add_argument("--nbits", type=int_at_least(1), default=8, help="bits per PQ sub-quantiser code (default 8)")
    b.add_argument("--nlist", type=POSITIVE_INT, default=None, help="inverted lists (default ~4 sqrt(regions))")
    b.add_argument("--nprobe", type=POSITIVE_INT, default=None, help="lists visited per query (default 32)")
    b.set_defaults(func=c.cmd_index_build)

    p = sub.add_parser("search", help="find a query instance (image + box) in an index")
    add_index_options(p)
    add_region_index_options(p)
    p.add_argument("--query", required=True)
    p.add_argument("--box", help="x1,y1,x2,y2 in the query image's pixels (default: whole image)")
    p.add_argument("--top", type=POSITIVE_INT, default=10, help="images returned")
    p.add_argument("--small-box", action="store_true",
                   help="accept a box smaller than one feature cell (pools the cell at its centre)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--figure", help="PNG panel like the paper's Fig. 6")
    p.set_defaults(func=c.cmd_search)

    p = sub.add_parser("evaluate", help="mAP@k and localization on a benchmark")
    add_region_options(p)
    add_region_index_options(p)
    p.add_argument("--benchmark", required=True, help=f"one of: {', '.join(BENCHMARKS)}")
    p.add_argument("--root", default=None)
    p.add_argument("--pca", default="auto",
                   help="the whitening's collection: auto (the benchmark's usual other collection), "
                        "none, or a benchmark name")
    p.add_argument("--pca-dim", type=POSITIVE_INT, default=None)
    p.add_argument("--pca-subsample", type=POSITIVE_INT, default=1,
                   help="learn the whitening on every n-th database image of its collection (and its queries)")
    p.add_argument("--work", default="results/stores", help="where stores are kept and reused")
    p.add_argument("--out", default=None)
    p.add_argument("--ap-variant", default="truncated", choices=["truncated", "min"],
                   help="AP@k's normaliser printed (both are in results.json)")
    p.add_argument("--subsample", type=POSITIVE_INT, default=1,
                   help="keep every n-th database image (quick runs; the table says so)")
    p.add_argument("--query", default="box", choices=QUERY_KINDS,
                   help="box: instance search (each query pooled in its box); image: whole-image search")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c.cmd_evaluate)

    p = sub.add_parser("demo", help="DASR*, the fixed-box control and global average pooling on the bundled demo")
    add_region_options(p)
    p.add_argument("--root", default="data/demo", help="an instance-track style folder")
    p.add_argument("--out", default="results/demo", help="folder of the report and figures")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c.cmd_demo)

    p = sub.add_parser("serve", help="a local search page over an index: draw a box, see where the instance is")
    add_index_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_at_least(0), default=8000, help="port (0: any free one)")
    p.add_argument("--benchmark", help="the benchmark the index was extracted from: relevance marks and AP")
    p.add_argument("--benchmark-root", help="that benchmark's folder (default: its usual place)")
    p.set_defaults(func=c.cmd_serve)

    p = sub.add_parser("reproduce", help="run one of the paper's experiments from a config file")
    p.add_argument("config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=c.cmd_reproduce)
    return parser
