"""Builds the copy-paste benchmarks: instance-track's instances pasted onto paris-landmarks scenes.

Each instance-track query keeps its frame; N reference crops of each instance are pasted onto
different paris-landmarks photos (each used once) and M further photos are distractors, so no
reference shares the query's background. The recipe, its constants and their reasons:
``dasr.eval.datasets.copy_paste`` (also written into each built folder's README.md and recipe.json).

    make copy-paste                        # seed 0, both paste modes, into $DASR_DATA
    python data/make_copy_paste.py --seed 1 --mode feathered --out /tmp/cp

Writes ``<out>/copy-paste`` (hard paste) and/or ``<out>/copy-paste-feathered``; ``--out``
defaults to the folder ``default_root`` gives those names (``$DASR_DATA``, default ``~/dasr-data``),
where ``dasr evaluate --benchmark copy-paste`` and ``experiments/copy_paste.toml`` look. A folder
already holding the same build is kept; a different one is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dasr.errors import UserError
from dasr.eval.datasets import default_root
from dasr.eval.datasets.copy_paste import (BENCHMARK_OF_MODE, DEFAULT_DISTRACTORS, DEFAULT_REFERENCES, IMAGE_FORMATS,
                                           MODES, build_copy_paste, plan_copy_paste)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="random seed (placements and scene order)")
    p.add_argument("--references", type=int, default=DEFAULT_REFERENCES, help="N: references pasted per instance")
    p.add_argument("--distractors", type=int, default=DEFAULT_DISTRACTORS, help="M: scenes kept without a paste")
    p.add_argument("--mode", choices=[*MODES, "both"], default="both", help="paste mode(s) to build")
    p.add_argument("--out", default=None,
                   help="parent folder of copy-paste/ and copy-paste-feathered/ (default: where default_root "
                        "looks, $DASR_DATA or ~/dasr-data)")
    p.add_argument("--instance-track", default=None,
                   help="the instance-track folder (default: the shared folder found by default_root)")
    p.add_argument("--scenes", default=None,
                   help="the paris-landmarks folder of scenes (default: the shared folder found by default_root)")
    p.add_argument("--format", choices=IMAGE_FORMATS, default="jpg", help="format of the written images")
    p.add_argument("--force", action="store_true", help="replace an existing different build")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        plan = plan_copy_paste(args.instance_track or default_root("instance-track"),
                               args.scenes or default_root("paris-landmarks"), seed=args.seed,
                               references=args.references, distractors=args.distractors)
        for mode in (MODES if args.mode == "both" else (args.mode,)):
            name = BENCHMARK_OF_MODE[mode]
            out = Path(args.out) / name if args.out else default_root(name)
            wrote = build_copy_paste(plan, out, mode=mode, image_format=args.format, force=args.force,
                                     progress=not args.quiet)
            print(f"{out}: {'built' if wrote else 'already built with this recipe, kept'} ({name}: "
                  f"{len(plan.queries)} queries, {len(plan.placements)} pasted references, "
                  f"{len(plan.distractor_scenes)} distractors)")
    except UserError as e:
        print(f"make_copy_paste: error: {e}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
