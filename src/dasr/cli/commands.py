"""The ``dasr`` subcommands: each turns its arguments into library calls and prints the outcome.

Exit codes (one convention for every command): 0 = done; 2 = refused, with one line per
problem (``dasr: error: FILE: problem``): a bad option, a bad or missing file, an image that
cannot be read when images are the command's arguments, a collection of which nothing could be
extracted; 1 = an internal error (a bug), with its traceback; 130 = interrupted.  A collection
extraction that skips some unreadable images still exits 0: they are reported and listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dasr.cli.options import spec_from_args
from dasr.errors import UserError
from dasr.features.rmac_whitening import learn_rmac_whitening
from dasr.features.spec import ExtractorSpec, extractor_for_store
from dasr.io.atomic import atomic_write_bytes
from dasr.io.images import ImageError, load_image
from dasr.io.outputs import check_output_folder, check_output_path
from dasr.search import SearchIndex
from dasr.features.whitening import choose_whitening, learn_whitening, load_whitening_for, whitening_path
from dasr.search.query import parse_box, search_box
from dasr.search.region_index import build_region_index, open_region_index, region_index_path
from dasr.store import RegionStore, parse_shard, store_contents
from dasr.store.merge import merge_store_files
from dasr.store.extract import extract_collection

# The network (Keras, and TensorFlow under its backend), matplotlib and the experiments are
# imported by the commands that use them: `dasr --help`, `merge`, `whiten` and `index build`
# start in a fraction of a second and never load TensorFlow.

# The exit code of a command that refused (part of) its input.
REFUSED = 2


class CliError(UserError):
    """A user error found by a command: printed as one line, exit code 2."""


def _weights_path(backbone: str, weights: str) -> Path | None:
    """The weights file of ``--weights`` (None for ``random``)."""
    if weights == "random":
        return None
    from dasr.model.weights import resolve_weights

    return resolve_weights(backbone, None if weights == "imagenet" else weights)


class ImageArguments:
    """The images named on the command line, decoded one by one; an unreadable one is reported
    (one line) and makes the command's exit code 2, the others are still done."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.status = 0

    def __iter__(self):
        for i, path in enumerate(self.paths):
            try:
                image = load_image(path)
            except ImageError as e:
                print(f"dasr: error: {e}", file=sys.stderr)
                self.status = REFUSED
                continue
            yield i, path, image


def cmd_weights(args: argparse.Namespace) -> int:
    from dasr.model.backbone import RANDOM_WEIGHTS_SEED
    from dasr.model.weights import weights_fingerprint

    path = _weights_path(args.backbone, args.weights)
    if path is None:
        print(f"random: an untrained {args.backbone} seeded with {RANDOM_WEIGHTS_SEED} (no file)")
    else:
        print(f"{path}  (weights fingerprint {weights_fingerprint(path)})")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from dasr.model.architectures import classifier_model
    from dasr.model.backbone import RANDOM_WEIGHTS_SEED
    from dasr.model.classify import class_probabilities
    from dasr.model.weights import imagenet_labels

    path = _weights_path(args.backbone, args.weights)
    if path is None:
        import keras

        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    model = classifier_model(args.backbone, path)
    labels = imagenet_labels() if path is not None else None
    images = ImageArguments(args.images)
    for _, image_path, image in images:
        probs = class_probabilities(model, args.backbone, image)
        print(image_path)
        for idx in np.argsort(-probs)[: args.top]:
            name = labels[idx] if labels else "?"
            print(f"  {idx:4d}  {name:30s} {probs[idx]:.4f}")
    return images.status


def cmd_detect(args: argparse.Namespace) -> int:
    from dasr.figures import detection_figure

    if args.json and args.json != "-":
        check_output_path(args.json, args.images, (".json",), "--json")
    if args.figure:
        check_output_path(args.figure, args.images, (".png",), "--figure", format_from_suffix=True)
    extractor = spec_from_args(args).build()
    out = []
    images = ImageArguments(args.images)
    for i, image_path, image in images:
        ex = extractor(image, keep_maps=bool(args.figure))
        regions = ex.regions.to_json()
        out.append({"image": str(image_path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                    "method": args.method, "regions": regions})
        if not args.json:
            print(f"{image_path}: {len(regions)} regions ({args.method})")
            for reg in regions:
                print(f"  box {reg['box']}  score {reg['score']:.3f}  seed {reg['seed']}")
        if args.figure:
            fig = Path(args.figure)
            if len(args.images) > 1:
                fig = check_output_path(fig.with_name(f"{fig.stem}-{i}{fig.suffix}"), args.images, (".png",),
                                        "--figure")
            print(f"figure: {detection_figure(image, ex, fig)}")
    if args.json:
        text = json.dumps(out if len(out) != 1 else out[0], indent=1)
        if args.json == "-":
            print(text)
        else:
            atomic_write_bytes(Path(args.json), text.encode())
            print(f"wrote {args.json}")
    return images.status


def _extract_on_ray(args: argparse.Namespace) -> int:
    """``--engine ray``: exit code 1 when a shard failed with a bug, 2 when only with bad input."""
    if args.shard:
        raise CliError("--shard is for the local engine; --engine ray plans its own shards (--shard-size)")
    if args.images_per_step is not None:
        raise CliError("--images-per-step is for the local engine; Ray workers take their default")
    from dasr.distributed.ray_engine import RayOptions, extract_on_ray

    options = RayOptions(address=args.ray_address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker)
    summary = extract_on_ray(spec_from_args(args), args.images, args.out, root=args.root, shard_size=args.shard_size,
                             feature_dtype="float16" if args.float16 else "float32", limit=args.limit,
                             options=options, progress=not args.quiet)
    print(summary.line())
    if summary.merged is not None:
        print(f"{args.out}: {summary.merged.images} images, {summary.merged.regions} regions")
    if summary.skipped:
        print(f"skipped images are listed in {args.out}.skipped.tsv")
    if summary.failed:
        for r in summary.failed:
            last = (r.error or "").strip().splitlines()[-1:] or ["?"]
            print(f"dasr: error: shard {r.shard}/{summary.plan.shards} failed: {last[0]}", file=sys.stderr)
        print("dasr: error: the finished shards are merged; run the same command again to retry the failed ones",
              file=sys.stderr)
        return REFUSED if all(r.user_error for r in summary.failed) else 1
    if summary.merged is None or summary.merged.images == 0:
        raise CliError(f"{args.images}: no image could be extracted")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    check_output_path(args.out, [args.images], (".h5", ".hdf5"), "--out")
    if args.engine == "ray":
        return _extract_on_ray(args)
    shard = parse_shard(args.shard) if args.shard else None
    extractor = spec_from_args(args).build()
    summary = extract_collection(extractor, args.images, args.out, root=args.root, shard=shard,
                                 feature_dtype="float16" if args.float16 else "float32",
                                 progress=not args.quiet, limit=args.limit, images_per_step=args.images_per_step)
    print(summary.line())
    if summary.skipped:
        print(f"skipped images are listed in {args.out}.skipped.tsv")
    if summary.extracted + summary.already_done == 0:
        raise CliError(f"{args.images}: no image could be extracted")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    check_output_path(args.out, args.shards, (".h5", ".hdf5"), "--out")
    merged = merge_store_files(args.shards, args.out, allow_incomplete=args.allow_incomplete)
    print(f"{args.out}: {merged.images} images, {merged.regions} regions")
    return 0


def cmd_whiten(args: argparse.Namespace) -> int:
    if Path(args.learn_from).resolve() == Path(args.store).resolve():
        raise CliError("the whitening must be learned on another collection than the index")
    index = RegionStore.open(args.store)
    source = RegionStore.open(args.learn_from, expected_config=index.config)
    out = check_output_path(args.out or whitening_path(args.store, Path(args.learn_from).stem, args.pca_dim),
                            [args.store, args.learn_from], (".npz",), "--out")
    params = learn_whitening(source, out, args.pca_dim)
    print(f"{out}: PCA-whitening {params['projection'].shape[0]} -> {params['projection'].shape[1]} "
          f"learned on {len(source.arrays['features'])} regions of {args.learn_from}")
    return 0


def cmd_whiten_rmac(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, [args.images], (".npz",), "--out")
    if not Path(args.images).is_dir():
        raise CliError(f"{args.images}: not a folder of images")
    extractor = ExtractorSpec.from_options(method="rmac", backbone=args.backbone, weights=args.weights,
                                           feature_layer=args.layer, max_side=args.max_side).build()
    params = learn_rmac_whitening(extractor, args.images, out, args.pca_dim, progress=not args.quiet)
    print(f"{out}: R-MAC region whitening {params['projection'].shape[0]} -> {params['projection'].shape[1]} "
          f"learned on {args.images}")
    return 0


def cmd_index_build(args: argparse.Namespace) -> int:
    out = check_output_path(args.out or region_index_path(args.store, args.kind), [args.store], (".npz",), "--out")
    choice = choose_whitening(args.store, args.pca)
    params = load_whitening_for(choice.path, store_contents(args.store)[0]) if choice.path else None
    path, meta = build_region_index(args.store, params, args.kind, out, args.bytes_per_region,
                                    nbits=args.nbits, nlist=args.nlist, nprobe=args.nprobe,
                                    whitening_path=choice.path)
    print(choice.describe())
    print(f"{path}: {meta['factory']} over {meta['n']} regions of {meta['d']} dimensions, "
          f"{meta['code_bytes']} bytes per region (code + id)")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    box = parse_box(args.box, "--box") if args.box else None
    if args.figure:
        check_output_path(args.figure, [args.query, args.store], (".png",), "--figure", format_from_suffix=True)
    index, whitening = SearchIndex.open(args.store, pca=args.pca)
    if args.index_kind != "exact":
        index.region_index = open_region_index(region_index_path(args.store, args.index_kind), args.store,
                                               index.whitening, args.candidates)
    try:
        image = load_image(args.query)
    except ImageError as e:
        raise CliError(str(e)) from None
    extractor = extractor_for_store(index.store.config, args.weights)
    result = search_box(index, extractor, image, box, args.top, args.query, args.small_box)
    if result.clipped:
        print(f"warning: {args.query}: query box {box} extends beyond the {image.shape[1]}x{image.shape[0]} "
              f"image; clipped to {result.box}", file=sys.stderr)
    rows = [hit.to_json() for hit in result.hits]
    if args.json:
        print(json.dumps({"query": args.query, "box": list(result.box),
                          "whitening": str(whitening.path) if whitening.path else None, "results": rows}, indent=1))
    else:
        print(whitening.describe())
        for r in rows:
            print(f"{r['rank']:3d}  {r['score']:.4f}  {r['image']}  box {r['box']}")
    if args.figure:
        from dasr.figures import results_panel

        root = Path(index.store.root)
        panel = []
        for hit in result.hits:
            try:
                panel.append((load_image(root / hit.image), np.array(hit.box), hit.score, None))
            except ImageError as e:
                print(f"warning: {e}", file=sys.stderr)
        print(f"figure: {results_panel(image, result.box, panel, args.figure)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dasr.eval.instance import evaluate, format_table

    extractor = spec_from_args(args).build()
    out = args.out or f"results/evaluate/{args.benchmark}/{args.method}"
    pca, source = ("none", None) if args.pca == "none" else ("other", None if args.pca == "auto" else args.pca)
    result = evaluate(extractor, args.benchmark, args.root, work=args.work, pca=pca, pca_benchmark=source,
                      pca_dim=args.pca_dim, out=out, progress=not args.quiet, subsample=args.subsample,
                      index_kind=args.index_kind, candidates=args.candidates, pca_subsample=args.pca_subsample,
                      query=args.query)
    print(format_table([result], variant=args.ap_variant))
    if isinstance(result.ap_definition, dict):
        print(f"AP@k: {args.ap_variant} = {result.ap_definition[args.ap_variant]}")
    print(f"wrote {out}/results.json and {out}/rankings.tsv")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: DASR*, the fixed-box control and GAP on the bundled demo collection."""
    from dasr.demo import run_demo

    check_output_folder(args.out, "--out")
    report = run_demo(spec_from_args(args), args.root, args.out, progress=not args.quiet)
    for line in report.lines():
        print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # Flask is an optional extra (dasr[serve]): only this command imports it.
    try:
        from dasr.serve import serve
    except ModuleNotFoundError as e:
        raise CliError(f"dasr serve needs {e.name}: pip install 'dasr[serve]'") from None
    serve(args.store, args.host, args.port, args.pca, args.weights, args.benchmark, args.benchmark_root)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Exit code 1 when some cells failed: the others' report is written, the failures are listed."""
    from dasr.experiments import ExperimentError, run_experiment

    try:
        run_experiment(args.config, args.set or [], quiet=args.quiet)
    except ExperimentError as e:
        print(f"dasr: error: {e}", file=sys.stderr)
        return 1
    return 0
