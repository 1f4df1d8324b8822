"""VLAD aggregation of DASR region descriptors into one vector per image.

Implements VLAD (Jegou et al., CVPR 2010) with the VLAD* improvements of
Delhumeau et al. ("Revisiting the VLAD image representation", ACM MM 2013):

1. each region descriptor is assigned to its nearest visual word;
2. residual normalisation: every residual ``x - c`` is l2-normalised before
   being summed, so that each region votes with the same weight whatever its
   distance to the word;
3. optional intra-normalisation (Arandjelovic & Zisserman, CVPR 2013): each
   word's block is l2-normalised;
4. signed power law ``sign(v) * |v|^power`` to damp bursty components;
5. global l2 normalisation.

The PCA rotation / whitening of the final vectors is learnt on VLAD vectors
of an independent collection with :func:`learn_vlad_pca` (a thin wrapper of
:func:`dasr.features.whitening.learn_pca_whitening`) and applied with
:func:`dasr.features.whitening.postprocess`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from dasr.features.whitening import learn_pca_whitening

__all__ = [
    "learn_codebook",
    "assign",
    "vlad_encode",
    "vlad_encode_many",
    "learn_vlad_pca",
]


def learn_codebook(
    x: np.ndarray,
    k: int = 4,
    seed: int = 0,
    n_init: int = 4,
    max_iter: int = 300,
    max_points: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Learn a visual vocabulary with k-means (scikit-learn, Lloyd + k-means++).

    scikit-learn is used rather than faiss because its result is a
    deterministic function of ``seed`` (faiss' multi-threaded k-means can
    differ across thread counts), which keeps experiments reproducible.

    Args:
        x: ``(n, d)`` learning descriptors (region features of an independent
            collection, already post-processed).
        k: number of visual words.
        seed: random seed for the subsample and the k-means initialisation.
        n_init: number of k-means restarts; the best (lowest inertia) wins.
        max_iter: Lloyd iterations per restart.
        max_points: if set and ``n`` is larger, learn on a uniform random
            subsample of that many descriptors (k-means cost is linear in n).
        progress: show a bar over the restarts.  They run one at a time, drawing their
            starts from one random state in turn, and the first of the lowest inertia
            wins (a later one only with a different clustering), as inside one
            ``KMeans(n_init=n_init)``: the same centroids, with a bar.

    Returns:
        ``(k, d)`` float32 centroids.

    Raises:
        ValueError: if ``x`` is not 2-D, or has fewer distinct rows than ``k``.
    """
    from sklearn.cluster import KMeans  # heavy import, only needed when learning

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    if max_points is not None and x.shape[0] > max_points:
        x = x[np.sort(rng.choice(x.shape[0], size=max_points, replace=False))]
    # Fewer distinct points than words would give duplicate / empty words.
    if np.unique(x, axis=0).shape[0] < k:
        raise ValueError(f"need at least k={k} distinct descriptors, got {x.shape[0]} rows")
    state = np.random.RandomState(seed)
    best = None
    for _ in tqdm(range(n_init), desc=f"k-means ({k} words)", unit="restart", disable=not progress,
                  dynamic_ncols=True):
        km = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=state).fit(x)
        if best is None or (km.inertia_ < best.inertia_ and not _same_clustering(km.labels_, best.labels_)):
            best = km
    return best.cluster_centers_.astype(np.float32)


def _same_clustering(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings group the points alike (the same partition under other word numbers)."""
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def assign(features: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Nearest visual word (squared Euclidean distance) of every descriptor.

    Args:
        features: ``(n, d)`` descriptors.
        codebook: ``(k, d)`` centroids.

    Returns:
        ``(n,)`` int64 word indices; ties go to the lowest index.

    Raises:
        ValueError: on a dimension mismatch.
    """
    f = np.asarray(features, dtype=np.float64)
    c = np.asarray(codebook, dtype=np.float64)
    if f.ndim != 2 or c.ndim != 2 or f.shape[1] != c.shape[1]:
        raise ValueError(f"features {f.shape} and codebook {c.shape} do not match")
    # ||f - c||^2 = ||f||^2 - 2 f.c + ||c||^2; ||f||^2 does not change the argmin.
    d2 = (c * c).sum(axis=1)[None, :] - 2.0 * f @ c.T
    return np.argmin(d2, axis=1).astype(np.int64)


def vlad_encode(
    features: np.ndarray,
    codebook: np.ndarray,
    power: float = 0.5,
    residual_normalization: bool = True,
    intra: bool = False,
    eps: float = 1e-12,
) -> np.ndarray:
    """Encode the region descriptors of one image as a VLAD(*) vector.

    ``v_j = sum_{x: NN(x) = c_j} r(x - c_j)`` with ``r`` the l2 normalisation
    when ``residual_normalization`` (VLAD*) and the identity otherwise; the
    ``v_j`` are optionally intra-normalised, concatenated word by word
    (``v[j*d:(j+1)*d] = v_j``), passed through ``sign(v) * |v|^power`` and
    l2-normalised.

    An image with no regions (or whose regions all coincide with their words)
    is encoded as the all-zero vector: it then scores 0 against every query
    instead of producing NaNs, which ranks it after any image with a positive
    similarity.

    Args:
        features: ``(n, d)`` region descriptors of one image, ``n >= 0``.
        codebook: ``(k, d)`` visual words.
        power: power-law exponent (``1.0`` disables it; VLAD* uses 0.2-0.5).
        residual_normalization: l2-normalise every residual before summing.
        intra: l2-normalise each word's block before the power law.
        eps: guards the normalisations of zero residuals / blocks.

    Returns:
        ``(k * d,)`` float32 vector, unit norm or all zeros.

    Raises:
        ValueError: on a dimension mismatch or a non-positive ``power``.
    """
    c = np.asarray(codebook, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"codebook must have shape (k, d), got {c.shape}")
    k, d = c.shape
    if not power > 0:
        raise ValueError(f"power must be positive, got {power}")
    f = np.asarray(features, dtype=np.float64)
    if f.size == 0:
        return np.zeros(k * d, dtype=np.float32)
    if f.ndim != 2 or f.shape[1] != d:
        raise ValueError(f"features {f.shape} do not match codebook {c.shape}")

    words = assign(f, c)
    res = f - c[words]
    if residual_normalization:
        res /= np.linalg.norm(res, axis=1, keepdims=True) + eps
    v = np.zeros((k, d), dtype=np.float64)
    np.add.at(v, words, res)
    if intra:
        v /= np.linalg.norm(v, axis=1, keepdims=True) + eps
    v = v.ravel()
    if power != 1.0:
        v = np.sign(v) * np.abs(v) ** power
    norm = np.linalg.norm(v)
    if norm <= eps:
        return np.zeros(k * d, dtype=np.float32)
    return (v / norm).astype(np.float32)


def vlad_encode_many(
    features_per_image: Iterable[np.ndarray],
    codebook: np.ndarray,
    **kwargs: float | bool,
) -> np.ndarray:
    """Encode several images; see :func:`vlad_encode` for the options.

    Args:
        features_per_image: one ``(n_i, d)`` array per image.
        codebook: ``(k, d)`` visual words.
        **kwargs: forwarded to :func:`vlad_encode`.

    Returns:
        ``(N, k * d)`` float32 matrix, one row per image.
    """
    k, d = np.shape(codebook)
    rows = [vlad_encode(f, codebook, **kwargs) for f in features_per_image]
    if not rows:
        return np.zeros((0, k * d), dtype=np.float32)
    return np.stack(rows)


def learn_vlad_pca(
    vlad_vectors: np.ndarray,
    dim: int | None = None,
    whiten: bool = True,
    eps: float = 1e-9,
) -> dict[str, np.ndarray]:
    """Learn the PCA rotation / whitening of VLAD vectors.

    Thin wrapper of :func:`dasr.features.whitening.learn_pca_whitening`, to be fitted
    on the VLAD vectors of an independent collection. All-zero vectors
    (images without regions) are left out, since they would only pull the
    mean towards the origin. Note that ``dim`` is at most ``n - 1``: with a
    few thousand learning images and ``k * d`` in the hundreds of thousands,
    the PCA keeps at most as many components as images.

    Args:
        vlad_vectors: ``(n, k * d)`` VLAD vectors.
        dim: output dimensionality (``None``: all non-negligible components).
        whiten: whiten as well as rotate.
        eps: relative eigenvalue floor, see ``learn_pca_whitening``.

    Returns:
        whitening parameters dict (``mean``, ``projection``, ``eigenvalues``).

    Raises:
        ValueError: as :func:`dasr.features.whitening.learn_pca_whitening`.
    """
    v = np.asarray(vlad_vectors)
    if v.ndim != 2:
        raise ValueError(f"vlad_vectors must have shape (n, D), got {v.shape}")
    v = v[np.any(v != 0, axis=1)]
    return learn_pca_whitening(v, dim=dim, whiten=whiten, eps=eps)
