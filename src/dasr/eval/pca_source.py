"""Which collection a benchmark's whitening (and VLAD codebook) is learned on.

The PCA-whitening is always learned on ANOTHER collection than the one searched, as the paper
and the authors' code do: instance-track <-> paris-landmarks, and paris-landmarks for every
other benchmark.  Every evaluation (instance search, image search, scalability) asks
:func:`pca_source`, so the rule lives here only.
"""

from __future__ import annotations

from dasr.errors import InputError
from dasr.eval.datasets import BENCHMARKS

__all__ = ["DEFAULT_PCA_SOURCE", "FALLBACK_PCA_SOURCE", "pca_source"]

# paris6k-subset is made of paris-landmarks' own images: it learns on instance-track, never on them.
DEFAULT_PCA_SOURCE: dict[str, str] = {"instance-track": "paris-landmarks", "paris-landmarks": "instance-track",
                                      "paris6k-subset": "instance-track"}
FALLBACK_PCA_SOURCE = "paris-landmarks"


def pca_source(benchmark: str, requested: str | None = None) -> str:
    """The collection ``benchmark``'s whitening is learned on.

    Args:
      benchmark: the searched benchmark (registry name).
      requested: the collection asked for (None or ``""``: the default,
        :data:`DEFAULT_PCA_SOURCE` or else :data:`FALLBACK_PCA_SOURCE`).

    Returns:
      A registry name other than ``benchmark``.

    Raises:
      ValueError: ``requested`` is the searched benchmark itself, or not a registry name.
    """
    source = requested or DEFAULT_PCA_SOURCE.get(benchmark, FALLBACK_PCA_SOURCE)
    if source == benchmark:
        raise InputError(f"the whitening of {benchmark} must be learned on another collection than the one searched")
    if source not in BENCHMARKS:
        raise InputError(f"unknown whitening source {source!r}; known: {', '.join(BENCHMARKS)}")
    return source
