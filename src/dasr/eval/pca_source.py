"""Which collection a benchmark's whitening (and VLAD codebook) is learned on.

The PCA-whitening is always learned on ANOTHER collection than the one searched, as the paper
and the authors' code do: instance-track <-> paris-landmarks, and paris-landmarks for every
other benchmark.  Every evaluation (instance search, image search, scalability) asks
:func:`pca_source`, so the rule lives here only.

The copy-paste benchmarks (:mod:`dasr.eval.datasets.copy_paste`) are made of BOTH shared sets:
their scenes and distractors are paris-landmarks photos (paris6k-subset's images too), their
queries and pasted crops come from instance-track. Whitening learned on paris-landmarks would
learn the very photos searched, so asking for it (or paris6k-subset, or the other copy-paste
set) is an error (:data:`EXCLUDED_PCA_SOURCES`). Their default is instance-track, the lesser
overlap (it holds the query frames and the crops' source frames, not the backgrounds), only so
that the name resolves: a whitened copy-paste number is not independent of the queries, so
``experiments/copy_paste.toml`` runs without whitening (``pca = "none"``); for a whitened run name
a third collection (``pca_benchmark``, e.g. oxford5k or instre).
"""

from __future__ import annotations

from dasr.errors import InputError
from dasr.eval.datasets import BENCHMARKS

__all__ = ["DEFAULT_PCA_SOURCE", "EXCLUDED_PCA_SOURCES", "FALLBACK_PCA_SOURCE", "pca_source"]

# paris6k-subset is made of paris-landmarks' own images: it learns on instance-track, never on them.
DEFAULT_PCA_SOURCE: dict[str, str] = {"instance-track": "paris-landmarks", "paris-landmarks": "instance-track",
                                      "paris6k-subset": "instance-track",
                                      "copy-paste": "instance-track", "copy-paste-feathered": "instance-track"}
FALLBACK_PCA_SOURCE = "paris-landmarks"
# Collections holding the searched benchmark's own photos: never its whitening source, even on request.
EXCLUDED_PCA_SOURCES: dict[str, tuple[str, ...]] = {
    "copy-paste": ("paris-landmarks", "paris6k-subset", "copy-paste-feathered"),
    "copy-paste-feathered": ("paris-landmarks", "paris6k-subset", "copy-paste"),
}


def pca_source(benchmark: str, requested: str | None = None) -> str:
    """The collection ``benchmark``'s whitening is learned on.

    Args:
      benchmark: the searched benchmark (registry name).
      requested: the collection asked for (None or ``""``: the default,
        :data:`DEFAULT_PCA_SOURCE` or else :data:`FALLBACK_PCA_SOURCE`).

    Returns:
      A registry name other than ``benchmark``.

    Raises:
      ValueError: ``requested`` is the searched benchmark itself, a collection holding its
        photos (:data:`EXCLUDED_PCA_SOURCES`), or not a registry name.
    """
    source = requested or DEFAULT_PCA_SOURCE.get(benchmark, FALLBACK_PCA_SOURCE)
    if source == benchmark:
        raise InputError(f"the whitening of {benchmark} must be learned on another collection than the one searched")
    if source in EXCLUDED_PCA_SOURCES.get(benchmark, ()):
        raise InputError(f"the whitening of {benchmark} cannot be learned on {source}: {source} holds {benchmark}'s "
                         "own photos (its scenes); use --pca none or another collection")
    if source not in BENCHMARKS:
        raise InputError(f"unknown whitening source {source!r}; known: {', '.join(BENCHMARKS)}")
    return source
