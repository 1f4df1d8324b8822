"""The data model every loader returns, and what the loaders share.

* :class:`Benchmark` / :class:`Query`: database images, queries, ground truth (indices into
  ``Benchmark.database``) and the AP protocol (``Benchmark.ap``, see :mod:`dasr.eval.scoring`).
* :class:`DatasetMissingError`: a dataset or one of its files is not where it was looked for
  (its message names the path, the expected layout and where the dataset is published).
* :func:`default_root`: where a dataset is loaded from when no folder is given.
* the small parsing helpers of the annotation files (each error names the file and line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from dasr.errors import UserError
from dasr.errors import InputError

Box = tuple[float, float, float, float]

AP_PROTOCOLS: tuple[str, ...] = ("instance", "oxford", "holidays")
# What a query of a run is: its box (instance search) or its whole image (whole-image search).
QUERY_KINDS: tuple[str, ...] = ("box", "image")

@dataclass(frozen=True)
class Query:
    """One query of a benchmark.

    Attributes:
        name: a readable, unique id (the query image path, or e.g. ``'all_souls_1'``).
        image: the query image, relative to ``Benchmark.root``.
        box: ``x1, y1, x2, y2`` in the pixels of the stored image; ``None`` = whole image.
        positives: indices into ``Benchmark.database`` of the relevant images.
        junk: indices ignored by the AP (Oxford/Paris junk, revisitop's other difficulty).
        positive_boxes: database index -> ground-truth box of the instance, where known.
    """

    name: str
    image: str
    box: Box | None
    positives: tuple[int, ...]
    junk: tuple[int, ...] = ()
    positive_boxes: dict[int, Box] | None = None


@dataclass(frozen=True)
class Benchmark:
    """A retrieval benchmark: the database, the queries and how it is scored.

    Attributes:
        name: registry name (``'instance-160'``, ``'roxford5k'``, ...).
        root: the folder every path is relative to.
        database: image paths relative to ``root``.
        queries: the queries, in the dataset's own order.
        ap: ``'instance'``, ``'oxford'`` or ``'holidays'`` (:data:`AP_PROTOCOLS`; the formulas are
            in :mod:`dasr.eval.scoring`).
        query_in_database: the query images are database images and must be dropped from
            their own result list before scoring (Holidays). Oxford5k/Paris6k also contain
            their query images, but their protocol keeps them (they are listed as good), so
            this stays ``False`` there.
        protocol: the revisited protocol (``easy``, ``medium``, ``hard``) whose positives and
            junk the queries carry (R-Oxford / R-Paris); None for every other benchmark.
    """

    name: str
    root: Path
    database: tuple[str, ...]
    queries: tuple[Query, ...]
    ap: str
    query_in_database: bool = False
    protocol: str | None = None

    def __post_init__(self) -> None:
        # Catch index errors here once, instead of as wrong scores in the evaluation.
        if self.ap not in AP_PROTOCOLS:
            raise InputError(f"{self.name}: unknown ap {self.ap!r}")
        n = len(self.database)
        for q in self.queries:
            for idx in (*q.positives, *q.junk, *(q.positive_boxes or {})):
                if not 0 <= idx < n:
                    raise InputError(f"{self.name}: query {q.name!r} refers to database index {idx} "
                                     f"outside [0, {n})")


class DatasetMissingError(UserError, FileNotFoundError):
    """A dataset (or one of its files) is not where the loader looked.

    The message names the dataset, the expected path, the expected layout and where the
    dataset is published, so that it can be shown to the user as is.
    """

    def __init__(self, dataset: str, path: str | Path, detail: str = "") -> None:
        info = DATASET_INFO.get(dataset, {"layout": "(unknown dataset)", "source": "(unknown)"})
        self.dataset = dataset
        self.path = Path(path)
        message = (
            f"dataset '{dataset}' not found: {detail or 'missing'}: {path}\n"
            f"expected layout:\n{info['layout']}\n"
            f"where to get it: {info['source']}"
        )
        super().__init__(message)

    def __str__(self) -> str:  # OSError would otherwise print only the first argument oddly
        return str(self.args[0])


DATASET_INFO: dict[str, dict[str, str]] = {
    "instance-track": {
        "layout": "  <root>/annotations.csv  (image,instance,role,width,height,x1,y1,x2,y2,...)\n"
        "  <root>/gt.txt           (query N ref1 ... refN)\n"
        "  <root>/images/...",
        "source": "the project's shared folder shared/data/instance-track (built from public "
        "tracking benchmarks, see its README.md)",
    },
    "paris-landmarks": {
        "layout": "  <root>/annotations.csv  (image,landmark,role,width,height,...)\n"
        "  <root>/images/database/<landmark>/*.jpg, <root>/images/query/<landmark>/*.jpg",
        "source": "the project's shared folder shared/data/paris-landmarks (see its README.md)",
    },
    "instance-160": {
        "layout": "  <root>/gt.txt          (query N ref1 ... refN, paths relative to <root>)\n"
        "  <root>/boxes.txt       (optional: path x1 y1 x2 y2 [query])\n"
        "  <root>/distractors.txt (optional: one extra database image per line)",
        "source": "no public download known; built by Zhan & Zhao, 'Instance search via instance "
        "level segmentation and feature representation' (FCIS+XD; J. Visual Communication and "
        "Image Representation; arXiv:1806.03576) "
        "and used by Xiao et al. (DASR, ACM TOMM 2022); ask the authors (Wan-Lei Zhao, Xiamen "
        "University). See data/README.md",
    },
    "instance-335": {
        "layout": "  <root>/gt.txt          (query N ref1 ... refN, paths relative to <root>)\n"
        "  <root>/boxes.txt       (optional: path x1 y1 x2 y2 [query])\n"
        "  <root>/distractors.txt (optional: one extra database image per line)",
        "source": "no public download known; used by DASR (Xiao, Zhao et al., ACM TOMM 18(3s), "
        "2022), from the group of Wan-Lei Zhao (Xiamen University), whose DASR code "
        "(github.com/wlzhao22/DASR) ships no data; ask the authors. See data/README.md",
    },
    "instre": {
        "layout": "  <root>/gnd_instre.mat  (imlist, qimlist, gnd(i).ok, gnd(i).bbx)\n"
        "  <root>/INSTRE-S1/..., <root>/INSTRE-S2/..., <root>/INSTRE-M/...",
        "source": "INSTRE (Wang & Jiang); protocol of Iscen et al.; run data/download_instre.sh",
    },
    "holidays": {
        "layout": "  <root>/jpg/NNNNNN.jpg   (1491 images; group = NNNNNN // 100, query = first "
        "of a group)",
        "source": "INRIA Holidays (Jegou et al.); run data/download_holidays.sh",
    },
    "oxford5k": {
        "layout": "  <root>/jpg/*.jpg\n  <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt "
        "(gt_files_170407)",
        "source": "Oxford Buildings (VGG, Philbin et al.); run data/download_oxford5k.sh",
    },
    "paris6k": {
        "layout": "  <root>/jpg/*.jpg (flat)\n  <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt "
        "(paris_120310)",
        "source": "Paris Buildings (VGG, Philbin et al.); run data/download_paris6k.sh",
    },
    "copy-paste": {
        "layout": "  <root>/annotations.csv  (image,instance,role,width,height,x1,y1,x2,y2,source_image,...,scene,...)\n"
        "  <root>/gt.txt, <root>/recipe.json (mode \"hard\"), <root>/images/...",
        "source": "built from the shared instance-track and paris-landmarks folders: make copy-paste "
        "(data/make_copy_paste.py; dasr.eval.datasets.copy_paste)",
    },
    "copy-paste-feathered": {
        "layout": "  <root>/annotations.csv  (image,instance,role,width,height,x1,y1,x2,y2,source_image,...,scene,...)\n"
        "  <root>/gt.txt, <root>/recipe.json (mode \"feathered\"), <root>/images/...",
        "source": "built from the shared instance-track and paris-landmarks folders: make copy-paste "
        "(data/make_copy_paste.py; dasr.eval.datasets.copy_paste)",
    },
    "roxford5k": {
        "layout": "  <root>/gnd_roxford5k.pkl\n  <root>/jpg/<imlist[i]>.jpg",
        "source": "Revisited Oxford (Radenovic et al., revisitop); run data/download_roxford5k.sh",
    },
    "rparis6k": {
        "layout": "  <root>/gnd_rparis6k.pkl\n  <root>/jpg/<imlist[i]>.jpg (flat)",
        "source": "Revisited Paris (Radenovic et al., revisitop); run data/download_rparis6k.sh",
    },
}

# Data that lives in the project's shared folder rather than under $DASR_DATA.
SHARED_DATASETS = ("instance-track", "paris-landmarks")
# Benchmarks made of a shared dataset's images: the folder they are loaded from by default.
SHARED_FOLDER = {"paris6k-subset": "paris-landmarks"}


def default_root(name: str, start: str | Path | None = None) -> Path:
    """The folder a dataset is loaded from when no root is given.

    ``instance-track`` and ``paris-landmarks`` live in the project's shared folder: the current
    working directory (or ``start``) and each of its parents are searched for
    ``shared/data/<name>`` (so both ``<repo>/shared/data/<name>`` and the sibling checkout
    layout ``<repo>/../shared/data/<name>`` are found); ``paris6k-subset`` is loaded from the
    shared ``paris-landmarks`` folder (:data:`SHARED_FOLDER`). Every other dataset, and these
    when no shared folder is found, defaults to ``$DASR_DATA/<name>`` with ``DASR_DATA``
    defaulting to ``~/dasr-data``.

    Args:
        name: registry name.
        start: folder to start the upward search from (default: the current directory).

    Returns:
        The folder (it may not exist; the loader reports that).
    """
    folder_name = SHARED_FOLDER.get(name, name)
    if folder_name in SHARED_DATASETS:
        here = Path(start if start is not None else Path.cwd()).resolve()
        for folder in (here, *here.parents):
            candidate = folder / "shared" / "data" / folder_name
            if candidate.is_dir():
                return candidate
    return Path(os.environ.get("DASR_DATA", "~/dasr-data")).expanduser() / name


def require_path(dataset: str, path: Path, detail: str = "missing") -> Path:
    """``path`` itself, once it is known to exist.

    Args:
      dataset: registry name (names the dataset in the error).
      path: the file or folder the loader needs.
      detail: what the error says about it.

    Returns:
      ``path``.

    Raises:
      DatasetMissingError: ``path`` does not exist.
    """
    if not path.exists():
        raise DatasetMissingError(dataset, path, detail)
    return path


def bad_line(path: Path, line_no: int, problem: str) -> InputError:
    """The error of a malformed annotation line (to be raised by the caller)."""
    return InputError(f"{path}, line {line_no}: {problem}")


def stays_inside(name: str) -> bool:
    """Whether an annotation's image path stays under the dataset root (relative, no ``..`` out)."""
    if not name or os.path.isabs(name) or name.startswith("~"):
        return False
    return os.path.normpath(name).split(os.sep)[0] != ".."


def parse_box(values: Sequence[str], path: Path, line_no: int) -> Box:
    """Four numbers ``x1 y1 x2 y2`` of an annotation line as a box.

    Raises:
      ValueError: not four numbers, or ``x2 < x1`` / ``y2 < y1`` (file and line named).
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except ValueError:
        raise bad_line(path, line_no, f"box {' '.join(values)!r} is not four numbers") from None
    if not (x2 >= x1 and y2 >= y1):
        raise bad_line(path, line_no, f"box {x1, y1, x2, y2} has x2 < x1 or y2 < y1")
    return (x1, y1, x2, y2)


def read_gt_txt(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Parses ``query N ref1 ... refN`` lines into ``(line_no, query, refs)``."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise bad_line(path, line_no, "expected 'query N ref1 ... refN'")
            try:
                count = int(tokens[1])
            except ValueError:
                raise bad_line(path, line_no, f"count N={tokens[1]!r} is not an integer") from None
            refs = tuple(tokens[2:])
            if count != len(refs):
                raise bad_line(path, line_no, f"N={count} but {len(refs)} references follow")
            if len(set(refs)) != len(refs):
                raise bad_line(path, line_no, "a reference is listed twice")
            outside = [t for t in (tokens[0], *refs) if not stays_inside(t)]
            if outside:
                raise bad_line(path, line_no, f"{outside[0]!r} is not a path inside the dataset folder")
            entries.append((line_no, tokens[0], refs))
    return entries


def read_path_list(path: Path) -> list[str]:
    """The non-empty lines of ``path``, stripped."""
    with open(path, encoding="utf-8") as f:
        return [s for s in (line.strip() for line in f) if s]


def require_images(dataset: str, root: Path, paths: Iterable[str]) -> None:
    """Checks that every image of ``paths`` (relative to ``root``) is a file.

    Raises:
      DatasetMissingError: the first missing image (with the count of the missing ones).
    """
    missing = [p for p in dict.fromkeys(paths) if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DatasetMissingError(dataset, root / missing[0],
                                  f"{len(missing)} image(s) missing ({shown}); first one")


def index_of(database: Sequence[str]) -> dict[str, int]:
    """Image path -> its index in ``database``."""
    return {p: i for i, p in enumerate(database)}
