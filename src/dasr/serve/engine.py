"""What the search page does, without the web: an index, its network, and the searches.

:class:`SearchEngine` opens a region store and its whitening once (:meth:`SearchIndex.open`),
rebuilds the network the store was extracted with once (:func:`extractor_for_store`), and then
answers searches with the library's own function, :func:`dasr.search.query.search_box` (the
box checked, described like the regions, ranked by THE ranking of :mod:`dasr.search.ranking`),
as ``dasr search`` does.  With a benchmark, results are marked relevant by its ground truth and
the query's AP is the evaluation's scoring (:func:`dasr.eval.scoring.score_query`) of the
returned images, mapped to the benchmark's database by name.

Images are only ever read by their position in the store (an id), and only when the stored
name resolves to a regular file inside the store's root: a name with ``..``, an absolute name
or a symbolic link leading out of the collection is refused.  Nothing is written anywhere but
the system's temporary folder (an upload is decoded from a temporary file, removed at once).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dasr.eval.datasets import Benchmark, load_benchmark
from dasr.eval.scoring import score_query
from dasr.features.extractor import Extractor
from dasr.features.spec import extractor_for_store
from dasr.errors import UserError
from dasr.io.images import ImageError, load_image
from dasr.search import SearchIndex
from dasr.features.whitening import WhiteningChoice
from dasr.search.index import Hit
from dasr.search.query import QueryBoxError, search_box

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# 40 megapixels: any phone photo, far below a decompression bomb.
MAX_UPLOAD_PIXELS = 40_000_000
MAX_TOP = 100


class RequestError(UserError, ValueError):
    """A request the engine refuses; ``status`` is the HTTP status, the message one line."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(" ".join(str(message).split()))
        self.status = status


@dataclass(frozen=True)
class PageHit:
    """One result as the page shows it: an indexed image (by id), its best region's box and score.

    Attributes:
      rank: 1-based.
      image_id: position in the store.
      name: the image's name in the store.
      score: cosine similarity of the best region.
      box: that region's box (x1, y1, x2, y2, original pixels).
      relevant: with a benchmark, whether the image shows the queried instance (else None).
      truth: with a benchmark, the instance's ground-truth box in this image, where known.
    """

    rank: int
    image_id: int
    name: str
    score: float
    box: list[float]
    relevant: bool | None = None
    truth: list[float] | None = None


@dataclass(frozen=True)
class SearchResult:
    """The answer to one search.

    Attributes:
      query: what was searched: ``image <id>``, ``query <k>`` (a benchmark query) or ``upload``.
      box: the query box actually described (clipped to the image).
      hits: the top results, best first.
      ap: with a benchmark query, metric name -> value (``ap`` = whole list, ``ap@k/truncated``).
      seconds: time spent checking and describing the box and ranking the index.
    """

    query: str
    box: list[float]
    hits: list[PageHit]
    ap: dict[str, float] | None
    seconds: float


@dataclass(frozen=True)
class ImageRecord:
    """An indexed image and its stored regions (what the page draws when it opens it large)."""

    image_id: int
    name: str
    width: int
    height: int
    regions: list[list[float]]
    scores: list[float]


@dataclass(frozen=True)
class QueryRecord:
    """A benchmark query: its image (outside the index for instance-track) and its box."""

    query_id: int
    name: str
    image: str
    width: int
    height: int
    box: list[float] | None
    positives: int


@dataclass(frozen=True)
class IndexInfo:
    """What the page shows in its corner."""

    store: str
    method: str
    config: dict
    whitening: str
    images: int
    regions: int
    benchmark: str | None
    names: list[str] = field(repr=False)


def _rounded(box) -> list[float]:
    return [round(float(v), 1) for v in box]


class SearchEngine:
    """An index with its network, ready for searches (load once, search many times).

    Args:
      index: the opened index.
      whitening: which whitening it uses and why (:meth:`SearchIndex.open`).
      extractor: the network the store was extracted with.
      benchmark: the benchmark the store indexes (relevance marks and APs), or None.
      max_upload_bytes, max_upload_pixels: limits of an uploaded query photo.
    """

    def __init__(self, index: SearchIndex, whitening: WhiteningChoice, extractor: Extractor,
                 benchmark: Benchmark | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS):
        self.index = index
        self.whitening = whitening
        self.extractor = extractor
        self.benchmark = benchmark
        self.max_upload_bytes = max_upload_bytes
        self.max_upload_pixels = max_upload_pixels
        self.root = Path(index.store.root).resolve()
        # One network, one query at a time: TensorFlow's functions are not meant to be traced
        # concurrently, and two queries on 2 cores would not be faster than one after the other.
        self._lock = threading.Lock()
        # Benchmark database position of each indexed image (-1: not in it), and the query whose
        # instance each database position shows.
        self._bench_position: list[int] = []
        self._instance_of: dict[int, int] = {}
        # Each query image's (width, height), decoded once: the query list is asked for on every
        # page load, and the benchmark's files do not change under a running server.
        self._query_sizes: dict[int, tuple[int, int]] = {}
        if benchmark is not None:
            position = {name: i for i, name in enumerate(benchmark.database)}
            for qi, q in enumerate(benchmark.queries):
                for p in q.positives:
                    self._instance_of.setdefault(p, qi)
            self._bench_position = [position.get(name, -1) for name in index.store.images]

    @classmethod
    def open(cls, index: str | os.PathLike, pca: str | os.PathLike | None = "auto",
             weights: str | None = None, benchmark: str | None = None,
             benchmark_root: str | os.PathLike | None = None) -> "SearchEngine":
        """Opens a store, its whitening and its network, and (optionally) its benchmark.

        Args:
          index: the store path.
          pca: see :func:`dasr.features.whitening.choose_whitening`.
          weights: see :func:`dasr.features.spec.extractor_for_store`.
          benchmark: registry name of the benchmark the store indexes.
          benchmark_root: that benchmark's folder (None: its default).

        Raises:
          dasr.store.StoreError: the store cannot be read.
          ValueError: ambiguous whitening, other weights than the store's, a benchmark that
            shares no image with the store.
        """
        search_index, whitening = SearchIndex.open(index, pca)
        extractor = extractor_for_store(search_index.store.config, weights)
        bench = None
        if benchmark is not None:
            bench = load_benchmark(benchmark, benchmark_root)
            if not set(bench.database) & set(search_index.store.images):
                raise ValueError(f"{index}: no image of benchmark {benchmark} ({bench.root}) is in the index")
        engine = cls(search_index, whitening, extractor, bench)
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Traces the network's functions once, so that the first real search is as fast as the others."""
        side = max(self.extractor.stride * 2, 64)
        self.extractor.describe_box(np.zeros((side, side, 3), np.uint8), (0.0, 0.0, float(side), float(side)))

    # ------------------------------------------------------------------ what is indexed
    def info(self) -> IndexInfo:
        store = self.index.store
        return IndexInfo(os.fspath(store.path), self.extractor.method, dict(store.config),
                         self.whitening.describe(), len(store), int(len(store.region_image)),
                         self.benchmark.name if self.benchmark else None, list(store.images))

    def _check_id(self, image_id: int) -> int:
        n = len(self.index.store)
        if not 0 <= image_id < n:
            raise RequestError(f"image {image_id}: no such image (the index has {n}, ids 0..{n - 1})", 404)
        return image_id

    def image_path(self, image_id: int) -> Path:
        """The file of an indexed image, only if it lies inside the collection.

        Raises:
          RequestError: an unknown id (404), or a stored name that leaves the collection
            (``..``, absolute, a symbolic link out of the root) or is not a regular file (404).
        """
        name = self.index.store.images[self._check_id(image_id)]
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise RequestError(f"image {image_id}: not a file inside the collection", 404)
        return path

    def load(self, image_id: int) -> np.ndarray:
        """The pixels of an indexed image (RGB uint8).

        Raises:
          RequestError: see :meth:`image_path`; an image that no longer decodes (404).
        """
        try:
            return load_image(self.image_path(image_id))
        except ImageError as e:
            raise RequestError(f"image {image_id}: {e.reason}", 404) from None

    def image_record(self, image_id: int) -> ImageRecord:
        """An indexed image's name, size and stored regions (nothing is recomputed)."""
        store = self.index.store
        regions = store.regions_of(self._check_id(image_id))
        width, height = (int(v) for v in store.sizes[image_id])
        return ImageRecord(image_id, store.images[image_id], width, height,
                           [_rounded(b) for b in regions["boxes"]],
                           [round(float(s), 4) for s in regions.get("scores", np.zeros(0))])

    # ------------------------------------------------------------------ benchmark queries
    def queries(self) -> list[QueryRecord]:
        """The benchmark's queries (none without a benchmark)."""
        if self.benchmark is None:
            return []
        return [self.query_record(k) for k in range(len(self.benchmark.queries))]

    def query_record(self, query_id: int) -> QueryRecord:
        bench = self._bench_or_error()
        if not 0 <= query_id < len(bench.queries):
            raise RequestError(f"query {query_id}: no such query ({len(bench.queries)} in {bench.name})", 404)
        q = bench.queries[query_id]
        width, height = self._query_size(query_id)
        return QueryRecord(query_id, q.name, q.image, width, height,
                           _rounded(q.box) if q.box else None, len(q.positives))

    def _query_size(self, query_id: int) -> tuple[int, int]:
        if query_id not in self._query_sizes:
            image = self.load_query(query_id)
            self._query_sizes[query_id] = int(image.shape[1]), int(image.shape[0])
        return self._query_sizes[query_id]

    def _bench_or_error(self) -> Benchmark:
        if self.benchmark is None:
            raise RequestError("no benchmark: start the server with --benchmark NAME", 404)
        return self.benchmark

    def load_query(self, query_id: int) -> np.ndarray:
        """The pixels of a benchmark query's image (a file the benchmark lists, under its root)."""
        bench = self._bench_or_error()
        if not 0 <= query_id < len(bench.queries):
            raise RequestError(f"query {query_id}: no such query", 404)
        root = Path(bench.root).resolve()
        path = (root / bench.queries[query_id].image).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise RequestError(f"query {query_id}: not a file inside the benchmark", 404)
        try:
            return load_image(path)
        except ImageError as e:
            raise RequestError(f"query {query_id}: {e.reason}", 404) from None

    # ------------------------------------------------------------------ searches
    def decode_upload(self, data: bytes) -> np.ndarray:
        """An uploaded photo's pixels, with the size and pixel limits.

        Decoded from a temporary file by :func:`load_image` (its format and bomb guards).

        Raises:
          RequestError: too many bytes (413), empty, undecodable or too many pixels (400).
        """
        if len(data) > self.max_upload_bytes:
            raise RequestError(f"upload: {len(data)} bytes, more than the {self.max_upload_bytes} allowed", 413)
        if not data:
            raise RequestError("upload: empty file")
        with tempfile.NamedTemporaryFile(prefix="dasr-upload-") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                return load_image(tmp.name, max_pixels=self.max_upload_pixels)
            except ImageError as e:
                raise RequestError(f"upload: {e.reason}") from None

    def search(self, image: np.ndarray, box, top: int = 10, query: str = "upload",
               query_id: int | None = None, allow_small: bool = False) -> SearchResult:
        """Searches the index for the instance in ``box`` of ``image`` (:func:`search_box`).

        Args:
          image: the query photo (RGB uint8).
          box: x1, y1, x2, y2 in its pixels (None: the whole image).
          top: how many results to return (1..:data:`MAX_TOP`).
          query: how the query is named in the result and the messages.
          query_id: the benchmark query this is (relevance marks and AP), or None.
          allow_small: accept a box below one feature cell.

        Raises:
          RequestError: an invalid box or ``top``.
        """
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
            raise RequestError(f"top must be an integer from 1 to {MAX_TOP}, got {top!r}")
        with self._lock:
            t0 = time.perf_counter()
            try:
                # The AP needs the whole ranking; the page shows its first ``top``.
                found = search_box(self.index, self.extractor, image, box,
                                   None if query_id is not None else top, query, allow_small)
            except QueryBoxError as e:
                raise RequestError(str(e)) from None
            seconds = time.perf_counter() - t0
        ap = None
        if query_id is not None:
            # Images without any region are not returned, so they count as not retrieved.
            # (and an indexed image outside the benchmark is not part of its ranking).
            ranked = [(self._bench_position[self.index.store.index(h.image)], h.box) for h in found.hits]
            ranked = [(p, b) for p, b in ranked if p >= 0]
            boxes = np.array([b for _, b in ranked], np.float32).reshape(-1, 4)
            ap = score_query(self.benchmark, query_id, [p for p, _ in ranked], boxes).ap
        hits = [self._hit(h, query_id) for h in found.hits[:top]]
        return SearchResult(query, _rounded(found.box), hits, ap, round(seconds, 4))

    def search_image(self, image_id: int, box, top: int = 10) -> SearchResult:
        """:meth:`search` with an indexed image as the query; with a benchmark, the images of the
        same instance are marked relevant (no AP: the image is not one of the benchmark's queries)."""
        result = self.search(self.load(image_id), box, top, query=f"image {image_id}")
        if self.benchmark is None:
            return result
        same = self._instance_of.get(self._bench_position[image_id])
        hits = [PageHit(h.rank, h.image_id, h.name, h.score, h.box, *self._truth(same, h.image_id))
                for h in result.hits] if same is not None else result.hits
        return SearchResult(result.query, result.box, hits, None, result.seconds)

    def search_query(self, query_id: int, box=None, top: int = 10) -> SearchResult:
        """:meth:`search` with a benchmark query (default box: the query's own box)."""
        bench = self._bench_or_error()
        image = self.load_query(query_id)
        if box is None:
            box = bench.queries[query_id].box
        return self.search(image, box, top, query=f"query {query_id}", query_id=query_id)

    def _truth(self, query_id: int | None, image_id: int) -> tuple[bool | None, list[float] | None]:
        """(relevant, ground-truth box) of an indexed image for a benchmark query."""
        if query_id is None:
            return None, None
        q = self.benchmark.queries[query_id]
        position = self._bench_position[image_id]
        relevant = position in q.positives
        truth = (q.positive_boxes or {}).get(position) if relevant else None
        return relevant, _rounded(truth) if truth is not None else None

    def _hit(self, hit: Hit, query_id: int | None) -> PageHit:
        image_id = self.index.store.index(hit.image)
        relevant, truth = self._truth(query_id, image_id)
        return PageHit(hit.rank, image_id, hit.image, round(hit.score, 5), _rounded(hit.box), relevant, truth)
