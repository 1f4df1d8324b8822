"""``dasr serve``: a local search page over an index (draw a box, see where the instance is).

* :mod:`~dasr.serve.engine`: :class:`SearchEngine`, the searches without the web (library
  search and extraction, loaded once);
* :mod:`~dasr.serve.app`: the Flask app, its JSON API and the page's static files
  (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from elsewhere);
* :mod:`~dasr.serve.server`: the local server (127.0.0.1 by default).
"""

from dasr.serve.app import create_app
from dasr.serve.engine import ImageRecord, IndexInfo, PageHit, QueryRecord, RequestError, SearchEngine, SearchResult
from dasr.serve.server import DEFAULT_HOST, DEFAULT_PORT, page_server, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ImageRecord", "IndexInfo", "PageHit", "QueryRecord", "RequestError",
           "SearchEngine", "SearchResult", "create_app", "page_server", "serve"]
