"""Running the search page: a threaded local HTTP server around :func:`create_app`.

Werkzeug's server is enough for one person's browser on their own machine; it binds to
127.0.0.1 unless told otherwise, and port 0 picks a free port (the tests use that).
"""

from __future__ import annotations

import os
import sys

from werkzeug.serving import BaseWSGIServer, make_server

from dasr.serve.app import create_app
from dasr.serve.engine import SearchEngine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def page_server(engine: SearchEngine, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> BaseWSGIServer:
    """A server of the page over ``engine``, bound but not yet serving (``serve_forever()``).

    Args:
      engine: the loaded index and network.
      host: the address to bind (default: this machine only).
      port: the port (0: any free one; read it back from ``server.server_port``).

    Raises:
      OSError: the address cannot be bound (e.g. the port is taken).
    """
    return make_server(host, port, create_app(engine), threaded=True)


def serve(index: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          pca: str | None = "auto", weights: str | None = None, benchmark: str | None = None,
          benchmark_root: str | os.PathLike | None = None) -> None:
    """Loads the index and its network once, then serves the page until Ctrl-C.

    Args:
      index: the store path.
      host, port: where to listen (see :func:`page_server`).
      pca, weights, benchmark, benchmark_root: see :meth:`SearchEngine.open`.

    Raises:
      dasr.store.StoreError, ValueError, OSError: see :meth:`SearchEngine.open` and :func:`page_server`.
    """
    engine = SearchEngine.open(index, pca, weights, benchmark, benchmark_root)
    server = page_server(engine, host, port)
    info = engine.info()
    print(f"{info.store}: {info.images} images, {info.regions} regions, {info.method}; {info.whitening}")
    if host not in LOCAL_HOSTS:
        print(f"warning: listening on {host}: other machines can search this index and see its images",
              file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"search page: http://{shown}:{server.server_port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how the page is closed, not a failure
        print("search page stopped")
    finally:
        server.server_close()
