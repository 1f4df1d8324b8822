"""The search page's web app (Flask): the JSON API and the page's static files.

Routes (every error is JSON ``{"error": "<one line>"}`` with a 4xx status, never a traceback):

* ``GET  /``                            the page (``static/index.html``, plain HTML/CSS/JS, no CDN);
* ``GET  /api/info``                    the index: method, configuration, whitening, image names;
* ``GET  /api/images/<id>``             an indexed image: name, size, stored regions;
* ``GET  /api/images/<id>/pixels``      its pixels as JPEG (``?max_side=N`` for a thumbnail);
* ``GET  /api/queries``                 a benchmark's queries (``--benchmark``; else empty);
* ``GET  /api/queries/<k>/pixels``      a benchmark query's image as JPEG;
* ``POST /api/search``                  JSON ``{"image_id": 3, "box": [x1, y1, x2, y2], "top": 10}``
  (or ``"query_id"`` for a benchmark query), or a multipart form with the photo in ``upload``
  and ``box`` as ``"x1,y1,x2,y2"`` (``top`` optional).

Images are addressed by their position in the store only (see :class:`SearchEngine`).
"""

from __future__ import annotations

import dataclasses
import io
from importlib import resources

import numpy as np
from flask import Flask, Response, jsonify, request
from PIL import Image
from werkzeug.exceptions import HTTPException

from dasr.io.images import resize_long_side
from dasr.search.query import QueryBoxError, parse_box
from dasr.serve.engine import RequestError, SearchEngine

STATIC = resources.files("dasr.serve") / "static"
STATIC_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# Room for the form's other fields around a photo of the largest allowed size.
FORM_OVERHEAD = 64 * 1024
THUMBNAIL_SIDES = range(16, 4097)


def _jpeg(image: np.ndarray, max_side: int | None) -> Response:
    if max_side is not None and max(image.shape[:2]) > max_side:
        image = resize_long_side(image, max_side)[0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=88)
    return Response(buf.getvalue(), mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _max_side() -> int | None:
    text = request.args.get("max_side")
    if text is None:
        return None
    if not text.isdigit() or int(text) not in THUMBNAIL_SIDES:
        raise RequestError(f"max_side must be an integer from {THUMBNAIL_SIDES.start} to {THUMBNAIL_SIDES.stop - 1}")
    return int(text)


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
        raise RequestError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _box(value) -> tuple[float, float, float, float] | None:
    """A box from JSON (four numbers) or a form (``"x1,y1,x2,y2"``); None = the whole image."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            return parse_box(value)
        if isinstance(value, list) and len(value) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return tuple(float(v) for v in value)  # type: ignore[return-value]
    except QueryBoxError as e:
        raise RequestError(str(e)) from None
    raise RequestError(f"box must be four numbers [x1, y1, x2, y2], got {value!r}")


def create_app(engine: SearchEngine) -> Flask:
    """The web app over one loaded engine.

    Args:
      engine: the index and its network (:meth:`SearchEngine.open`).
    """
    app = Flask("dasr.serve", static_folder=None)
    # Werkzeug refuses a larger body (413) while reading it, before the form is parsed.
    app.config["MAX_CONTENT_LENGTH"] = engine.max_upload_bytes + FORM_OVERHEAD
    app.json.sort_keys = False

    @app.errorhandler(RequestError)
    def refused(e: RequestError):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return jsonify(error=f"{e.code} {e.name}: {' '.join((e.description or '').split())}"), e.code

    @app.get("/")
    def page():
        return static_file("index.html")

    @app.get("/static/<name>")
    def static_file(name: str):
        if name not in STATIC_TYPES:  # a fixed list: no path from the request reaches the disk
            raise RequestError(f"no static file {name!r}", 404)
        return Response((STATIC / name).read_bytes(), mimetype=STATIC_TYPES[name])

    @app.get("/api/info")
    def info():
        return jsonify(dataclasses.asdict(engine.info()))

    @app.get("/api/images/<int:image_id>")
    def image(image_id: int):
        return jsonify(dataclasses.asdict(engine.image_record(image_id)))

    @app.get("/api/images/<int:image_id>/pixels")
    def image_pixels(image_id: int):
        return _jpeg(engine.load(image_id), _max_side())

    @app.get("/api/queries")
    def queries():
        return jsonify([dataclasses.asdict(q) for q in engine.queries()])

    @app.get("/api/queries/<int:query_id>/pixels")
    def query_pixels(query_id: int):
        return _jpeg(engine.load_query(query_id), _max_side())

    @app.post("/api/search")
    def search():
        if request.mimetype == "multipart/form-data":
            fields = request.form
            upload = request.files.get("upload")
            if upload is None:
                raise RequestError("a multipart search needs the photo in the field 'upload'")
            data = upload.stream.read(engine.max_upload_bytes + 1)
            top = _integer(fields.get("top", 10), "top")
            result = engine.search(engine.decode_upload(data), _box(fields.get("box")), top)
        elif request.mimetype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            top = _integer(body.get("top", 10), "top")
            box = _box(body.get("box"))
            if "image_id" in body:
                result = engine.search_image(_integer(body["image_id"], "image_id"), box, top)
            elif "query_id" in body:
                result = engine.search_query(_integer(body["query_id"], "query_id"), box, top)
            else:
                raise RequestError("a JSON search needs 'image_id' (or 'query_id' with --benchmark)")
        else:
            raise RequestError("send JSON {image_id, box, top} or a multipart form with 'upload' and 'box'")
        return jsonify(dataclasses.asdict(result))

    return app
