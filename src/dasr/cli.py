"""The ``dasr`` command: weights, classify, detect, extract, merge, whiten, search, evaluate, reproduce."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

# TensorFlow's start-up chatter buries the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------- options
def add_backbone_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="resnet50", choices=["resnet50", "vgg16"])
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (cache, Keras download, npm export) or a .weights.h5 path")


def add_region_options(p: argparse.ArgumentParser, default_method: str = "dasr-star") -> None:
    from dasr.extractor import ALL_METHODS

    add_backbone_options(p)
    p.add_argument("--method", default=default_method, choices=ALL_METHODS)
    p.add_argument("--layer", default=None, help="feature layer (default conv5_block1_out / block5_conv3)")
    p.add_argument("--pooling", default="avg", choices=["avg", "max"])
    p.add_argument("--tau", type=float, default=0.1, help="threshold on the max-normalised map (τ)")
    p.add_argument("--beta", type=float, default=None,
                   help="NMS IoU (β); default 0.3 for dasr-star, no NMS for dasr")
    p.add_argument("--no-nms", action="store_true", help="no NMS, whatever the method")
    p.add_argument("--weighted-moments", action="store_true", help="weight the ellipse moments by the map")
    p.add_argument("--max-side", type=int, default=512, help="long side of the network input")
    p.add_argument("--input-rule", default="raw", choices=["raw", "shift"],
                   help="what plays A in the last step to the pixels (see dasr.backprop)")
    p.add_argument("--stop-stride", type=int, default=1,
                   help="fast mode: stop the backprop at this stride (1 = pixels, the paper)")
    p.add_argument("--cascade-stride", type=int, default=1,
                   help="fast mode: choose the seeds that survive NMS on maps stopped at this stride, "
                        "then compute only their full maps (1 = off, the paper)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="backprop compute type (auto: bfloat16 where the hardware has it)")
    p.add_argument("--strided-conv", default="window", choices=["window", "exact"])
    p.add_argument("--seed-chunk", type=int, default=16, help="seeds back-propagated together")
    p.add_argument("--max-seeds", type=int, default=None)
    p.add_argument("--fixed-box-side", type=float, default=96.0,
                   help="box side (network-input pixels) of the fixed-box control")


# Seed of the untrained test network (``--weights random``): every process must build the SAME
# random network, or a resumed extraction mixes two networks and a search describes its query
# with another network than the index's.
RANDOM_WEIGHTS_SEED = 0


def make_backbone(name: str, weights: str | None):
    """:func:`dasr.backbone.build_backbone`; ``"random"``/None gives the same seeded network every time."""
    from dasr.backbone import build_backbone

    if weights in (None, "random"):
        import keras

        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
        return build_backbone(name, None)
    return build_backbone(name, weights)


def build_extractor(args):
    from dasr.extractor import Extractor
    from dasr.regions import RegionConfig, default_nms

    nms_iou = None if args.no_nms else (args.beta if args.beta is not None
                                        else default_nms("dasr" if args.method == "dasr" else "dasr-star"))
    region = RegionConfig(method="dasr" if args.method == "dasr" else "dasr-star", tau=args.tau,
                          nms_iou=nms_iou, weighted_moments=args.weighted_moments, max_side=args.max_side,
                          input_rule=args.input_rule, strided_conv=args.strided_conv,
                          stop_stride=args.stop_stride, cascade_stride=args.cascade_stride, backprop_dtype=args.dtype,
                          seed_chunk=args.seed_chunk, max_seeds=args.max_seeds)
    backbone = make_backbone(args.backbone, args.weights)
    return Extractor(backbone, args.method, region, args.layer, args.pooling, args.fixed_box_side)


def extractor_from_store_config(config: dict, weights: str = "imagenet"):
    """Rebuilds the extractor an index was made with (to describe queries the same way)."""
    from dasr.extractor import Extractor
    from dasr.regions import RegionConfig

    region_keys = RegionConfig.__dataclass_fields__.keys()
    region = RegionConfig(**{k: config[k] for k in region_keys if k in config and k != "method"},
                          method="dasr" if config["method"] == "dasr" else "dasr-star")
    backbone = make_backbone(config["backbone"], "random" if config["weights"] == "random" else weights)
    if backbone.weights_id != config["weights"]:
        raise CliError(f"the index was extracted with weights {config['weights']}, these are {backbone.weights_id}")
    return Extractor(backbone, config["method"], region, config["feature_layer"], config["pooling"],
                     config.get("fixed_box_side", 96.0))


def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"--box {text!r}: expected four numbers x1,y1,x2,y2") from None
    if len(vals) != 4:
        raise CliError(f"--box {text!r}: expected four numbers x1,y1,x2,y2")
    return vals  # type: ignore[return-value]


def check_box(box, width: int, height: int, stride: int, scale: float, image: str,
              allow_small: bool = False) -> None:
    """Refuses query boxes that cannot describe anything (one line, names the image).

    A box smaller than one feature cell in both directions would be described by the single
    cell holding its centre, i.e. mostly by its surroundings: refused unless ``allow_small``.
    """
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise CliError(f"{image}: query box {box} has zero or negative area")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise CliError(f"{image}: query box {box} lies outside the {width}x{height} image")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        print(f"warning: {image}: query box {box} extends beyond the {width}x{height} image; clipped",
              file=sys.stderr)
    w, h = (min(x2, width) - max(x1, 0)) * scale, (min(y2, height) - max(y1, 0)) * scale
    if max(w, h) < 1.0:
        raise CliError(f"{image}: query box {box} is smaller than one pixel of the network input "
                       f"(scale {scale:.3f}); a feature cell is {stride} px")
    if max(w, h) < stride and not allow_small:
        raise CliError(f"{image}: query box {box} is {w:.0f}x{h:.0f} px in the network input, smaller "
                       f"than one {stride}x{stride} feature cell (--small-box pools the cell at its centre)")


# ----------------------------------------------------------------------------- commands
def cmd_weights(args) -> int:
    from dasr.weights import resolve_weights, weights_fingerprint

    path = resolve_weights(args.backbone, None if args.weights == "imagenet" else args.weights)
    print(f"{path}  (sha256 {weights_fingerprint(path)})")
    return 0


def cmd_classify(args) -> int:
    import numpy as np

    from dasr.backbone import classifier_model
    from dasr.images import ImageError, load_image, preprocess_caffe, resize_long_side
    from dasr.weights import imagenet_labels, resolve_weights

    path = resolve_weights(args.backbone, None if args.weights == "imagenet" else args.weights)
    model = classifier_model(args.backbone, path)
    labels = imagenet_labels()
    status = 0
    for image_path in args.images:
        try:
            image = load_image(image_path)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        # The classifier was trained on 224x224 crops; its global pooling takes any size,
        # but VGG-16's dense top needs exactly 224x224.
        import cv2

        x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA) if args.backbone == "vgg16" \
            else resize_long_side(image, 224)[0]
        # The ResNet-50 classifier is built on an input tensor, so Keras expects a list of inputs.
        probs = np.asarray(model([preprocess_caffe(x)[None]], training=False))[0]
        print(image_path)
        for idx in np.argsort(-probs)[: args.top]:
            name = labels[idx] if labels else "?"
            print(f"  {idx:4d}  {name:30s} {probs[idx]:.4f}")
    return status


def cmd_detect(args) -> int:
    from dasr.figures import detection_figure
    from dasr.images import ImageError, load_image

    extractor = build_extractor(args)
    out = []
    status = 0
    for i, image_path in enumerate(args.images):
        try:
            image = load_image(image_path)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        ex = extractor(image, keep_maps=bool(args.figure))
        r = ex.regions
        regions = [{"box": [round(float(v), 1) for v in r.boxes[k]], "score": float(r.scores[k]),
                    "seed": [int(v) for v in r.seeds[k]],
                    "ellipse": {"center": [round(float(v), 1) for v in r.ellipses[k, :2]],
                                "axes": [round(float(v), 1) for v in r.ellipses[k, 2:4]],
                                "angle": round(float(r.ellipses[k, 4]), 4)}} for k in range(len(r))]
        out.append({"image": str(image_path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                    "method": args.method, "regions": regions})
        if not args.json:
            print(f"{image_path}: {len(regions)} regions ({args.method})")
            for reg in regions:
                print(f"  box {reg['box']}  score {reg['score']:.3f}  seed {reg['seed']}")
        if args.figure:
            fig = Path(args.figure)
            if len(args.images) > 1:
                fig = fig.with_name(f"{fig.stem}-{i}{fig.suffix}")
            print(f"figure: {detection_figure(image, ex, fig)}")
    if args.json:
        text = json.dumps(out if len(out) != 1 else out[0], indent=1)
        if args.json == "-":
            print(text)
        else:
            from dasr.atomic import atomic_write_bytes

            atomic_write_bytes(Path(args.json), text.encode())
            print(f"wrote {args.json}")
    return status


def cmd_extract(args) -> int:
    from dasr.extract import extract_collection
    from dasr.store import parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    extractor = build_extractor(args)
    summary = extract_collection(extractor, args.images, args.out, root=args.root, shard=shard,
                                 feature_dtype="float16" if args.float16 else "float32",
                                 progress=not args.quiet, limit=args.limit)
    print(summary.line())
    if summary.skipped:
        print(f"skipped images are listed in {args.out}.skipped.tsv")
    if summary.extracted + summary.already_done == 0:
        return 1
    return 0


def cmd_merge(args) -> int:
    from dasr.store import merge_stores

    store = merge_stores(args.shards, args.out)
    print(f"{args.out}: {len(store)} images, {len(store.region_image)} regions")
    return 0


def cmd_whiten(args) -> int:
    from dasr.search import learn_whitening, whitening_path
    from dasr.store import RegionStore

    index = RegionStore.open(args.index)
    source = RegionStore.open(args.learn_from, expected_config=index.config)
    if Path(args.learn_from).resolve() == Path(args.index).resolve():
        raise CliError("the whitening must be learned on another collection than the index")
    out = args.out or whitening_path(args.index)
    params = learn_whitening(source, out, args.dim)
    print(f"{out}: PCA-whitening {params['projection'].shape[0]} -> {params['projection'].shape[1]} "
          f"learned on {len(source.arrays['features'])} regions of {args.learn_from}")
    return 0


def cmd_search(args) -> int:
    import numpy as np

    from dasr.figures import results_panel
    from dasr.images import ImageError, load_image
    from dasr.search import SearchIndex

    box = parse_box(args.box) if args.box else None
    index = SearchIndex.open(args.index, pca=args.pca)
    try:
        image = load_image(args.query)
    except ImageError as e:
        raise CliError(str(e)) from None
    h, w = image.shape[:2]
    if box is None:
        box = (0.0, 0.0, float(w), float(h))
    extractor = extractor_from_store_config(index.store.config, args.weights)
    scale = extractor.region.max_side / max(h, w)
    check_box(box, w, h, extractor.stride, scale, args.query, args.small_box)
    box = (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))
    ranking = index.search(index.describe(extractor.describe_box(image, box)), args.top)
    root = Path(index.store.root)
    rows = []
    for rank, (img, score, b) in enumerate(zip(ranking.order, ranking.scores, ranking.boxes), 1):
        rows.append({"rank": rank, "image": index.store.images[img], "score": float(score),
                     "box": [round(float(v), 1) for v in b]})
    if args.json:
        print(json.dumps({"query": args.query, "box": list(box), "results": rows}, indent=1))
    else:
        for r in rows:
            print(f"{r['rank']:3d}  {r['score']:.4f}  {r['image']}  box {r['box']}")
    if args.figure:
        panel = []
        for r in rows:
            try:
                panel.append((load_image(root / r["image"]), np.array(r["box"]), r["score"], None))
            except ImageError as e:
                print(f"warning: {e}", file=sys.stderr)
        print(f"figure: {results_panel(image, box, panel, args.figure)}")
    return 0


def cmd_evaluate(args) -> int:
    from dasr.evaluate import evaluate, format_table

    extractor = build_extractor(args)
    out = args.out or f"results/evaluate/{args.benchmark}/{args.method}"
    result = evaluate(extractor, args.benchmark, args.root, work=args.work, pca=args.pca,
                      pca_benchmark=args.pca_benchmark, pca_dim=args.pca_dim, out=out,
                      progress=not args.quiet, subsample=args.subsample)
    print(format_table([result], variant=args.ap_variant))
    if result["ap_definition"] and isinstance(result["ap_definition"], dict):
        print(f"AP@k: {args.ap_variant} = {result['ap_definition'][args.ap_variant]}")
    print(f"wrote {out}/results.json and {out}/rankings.tsv")
    return 0


def cmd_demo(args) -> int:
    """The README's main job: DASR* and a global baseline on the bundled demo collection."""
    from dasr.datasets import load_benchmark
    from dasr.evaluate import align_rankings, evaluate, format_table
    from dasr.figures import detection_figure, results_panel
    from dasr.images import load_image
    from dasr.search import SearchIndex
    from dasr.store import RegionStore

    out = Path(args.out)
    bench = load_benchmark("instance-track", args.root)
    results, extractors = [], {}
    for method in ("dasr-star", "gap"):
        args.method = method
        extractors[method] = build_extractor(args)
        # The demo is too small to learn a whitening on another collection: raw features.
        results.append(evaluate(extractors[method], "instance-track", args.root, work=out / "stores", pca="none",
                                out=out / method, progress=not args.quiet))
    print(format_table(results))
    extractor = extractors["dasr-star"]
    index = SearchIndex(RegionStore.open(results[0]["store"]))
    q = bench.queries[0]
    qimg = load_image(bench.root / q.image)
    # Store rows -> benchmark images, as the evaluation maps them (a skipped image shifts rows).
    ranking = align_rankings([index.search(index.describe(extractor.describe_box(qimg, q.box)))],
                             index.store, bench)[0].top(7)
    panel = [(load_image(bench.root / bench.database[i]), b, float(s), bool(i in q.positives))
             for i, s, b in zip(ranking.order, ranking.scores, ranking.boxes)]
    print(f"figure: {results_panel(qimg, q.box, panel, out / 'search-panel.png', title=q.name)}")
    ex = extractor(qimg, keep_maps=True)
    print(f"figure: {detection_figure(qimg, ex, out / 'regions.png')}")
    print(f"results: {out}/dasr-star/results.json, {out}/gap/results.json (AP@k: truncated; "
          f"DASR* regions/image {results[0]['regions_per_image']:.1f})")
    return 0


def cmd_reproduce(args) -> int:
    from dasr.reproduce import run_experiment

    run_experiment(args.config, args.set or [], quiet=args.quiet)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dasr", description=__doc__)
    from dasr import __version__

    parser.add_argument("--version", action="version", version=f"dasr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("weights", help="resolve, convert and cache the ImageNet weights; print their path")
    add_backbone_options(p)
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("classify", help="top-5 ImageNet classes of images (proves the weights are real)")
    add_backbone_options(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("detect", help="salient regions of images (DASR / DASR*)")
    add_region_options(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--json", help="write the regions as JSON to this file ('-': stdout)")
    p.add_argument("--figure", help="PNG like the paper's Figs. 1/3 (one per image)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("extract", help="regions and features of a collection into an HDF5 store (resumable)")
    add_region_options(p)
    p.add_argument("--images", required=True, help="a folder (recursive) or a text file of paths")
    p.add_argument("--root", help="the stored paths are relative to this folder")
    p.add_argument("--out", required=True, help="store path (.h5)")
    p.add_argument("--shard", help="i/n: only every n-th image starting at i (0-based)")
    p.add_argument("--float16", action="store_true", help="store features as float16")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("merge", help="join shard stores into one")
    p.add_argument("shards", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("whiten", help="learn an index's PCA-whitening on another collection's store")
    p.add_argument("--index", required=True)
    p.add_argument("--learn-from", required=True, help="store of ANOTHER collection, same configuration")
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--out", help="default <index>.whitening.npz")
    p.set_defaults(func=cmd_whiten)

    p = sub.add_parser("search", help="find a query instance (image + box) in an index")
    p.add_argument("--index", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--box", help="x1,y1,x2,y2 in the query image's pixels (default: whole image)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--small-box", action="store_true",
                   help="accept a box smaller than one feature cell (pools the cell at its centre)")
    p.add_argument("--pca", default="auto", help="auto (<index>.whitening.npz if present), none, or a path")
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--json", action="store_true")
    p.add_argument("--figure", help="PNG panel like the paper's Fig. 6")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("evaluate", help="mAP@k and localization on a benchmark")
    add_region_options(p)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--root", default=None)
    p.add_argument("--pca", default="other", choices=["other", "none"])
    p.add_argument("--pca-benchmark", default=None)
    p.add_argument("--pca-dim", type=int, default=None)
    p.add_argument("--work", default="results/stores", help="where stores are kept and reused")
    p.add_argument("--out", default=None)
    p.add_argument("--ap-variant", default="truncated", choices=["truncated", "min"])
    p.add_argument("--subsample", type=int, default=1,
                   help="keep every n-th database image (quick runs; the table says so)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="DASR* vs global average pooling on the bundled demo collection")
    add_region_options(p)
    p.add_argument("--root", default="data/demo", help="an instance-track style folder")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reproduce", help="run one of the paper's experiments from a config file")
    p.add_argument("config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Image names that are not valid UTF-8 are str with surrogate escapes; a strict stdout (any
    # UTF-8 locale but C/POSIX) would fail on them: print their original bytes instead, like ls.
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    from dasr.datasets import DatasetMissingError
    from dasr.images import ImageError
    from dasr.store import StoreError
    from dasr.weights import WeightsError

    try:
        return args.func(args)
    except (CliError, StoreError, ImageError, DatasetMissingError, WeightsError, FileNotFoundError,
            ValueError) as e:
        msg = str(e) if isinstance(e, (DatasetMissingError, WeightsError)) else str(e).splitlines()[0]
        print(f"dasr: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dasr: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
