"""Instance search over a region store.

* :mod:`~dasr.search.ranking`: THE ranking (an image scores as its best region), chunked;
* :mod:`~dasr.search.index`: :class:`SearchIndex` (a store's post-processed features; the
  whitening and its files are :mod:`dasr.features.whitening`'s);
* :mod:`~dasr.search.query`: checks of a query box before it is described;
* :mod:`~dasr.search.ann`: faiss indexes for collections too large for exact search.
* :mod:`~dasr.search.region_index`: a store's persisted faiss index (``dasr index build``), its
  candidates re-ranked exactly and reduced per image by the one ranking.
"""

from dasr.search.index import SearchIndex
from dasr.search.ranking import Ranking, rank_images

__all__ = ["Ranking", "SearchIndex", "rank_images"]
