"""The page's HTTP API (Flask test client): routes, one-line 4xx errors, images by id only,
upload limits, nothing written, static files that fetch nothing from elsewhere."""

from __future__ import annotations

import io
import os
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dasr.serve import SearchEngine, create_app
from serve_helpers import IMAGE_SIZE, engine_for, region_boxes, tiny_extractor, write_images, write_store

pytestmark = pytest.mark.timeout(120)


def snapshot(*folders: Path) -> dict:
    """Every file under the folders with its size and modification time."""
    return {os.fspath(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for f in folders for p in sorted(f.rglob("*"))}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve-api")
    root = base / "photos"
    names = write_images(root, 4)
    write_images(base / "outside", 1, prefix="secret")
    os.symlink(base / "outside" / "secret00.png", root / "link.png")
    names += ["link.png", "../outside/secret00.png"]
    extractor = tiny_extractor()
    store = write_store(base / "index" / "index.h5", root, names, extractor)
    engine = engine_for(store, extractor)
    before = snapshot(root, store.parent, base / "outside")
    yield engine, create_app(engine).test_client(), root, store
    assert snapshot(root, store.parent, base / "outside") == before, "the server wrote to the collection or store"


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    message = response.get_json()["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_the_page_and_its_static_files_are_served(site):
    _, client, _, _ = site
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'src="/static/app.js"' in page.data and b'href="/static/style.css"' in page.data
    for name, mimetype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.mimetype == mimetype and len(r.data) > 500
    error_of(client.get("/static/..%2Fapp.py"), 404)
    assert "no static file" in error_of(client.get("/static/engine.py"), 404)


def test_static_files_fetch_nothing_from_elsewhere():
    """Offline: no URL with a host, no import of another origin's code."""
    for path in (resources.files("dasr.serve") / "static").iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name


def test_info_describes_the_index(site):
    engine, client, _, _ = site
    info = client.get("/api/info").get_json()
    assert info["method"] == "dasr-star" and info["config"]["max_side"] == 64
    assert info["whitening"].startswith("whitening: none") and info["images"] == 6
    assert info["regions"] == sum(i % 3 + 1 for i in range(6)) and info["names"][:2] == ["img00.png", "img01.png"]


def test_an_image_record_holds_its_stored_regions(site):
    _, client, _, _ = site
    record = client.get("/api/images/2").get_json()
    assert record["name"] == "img02.png" and (record["width"], record["height"]) == IMAGE_SIZE
    np.testing.assert_allclose(record["regions"], region_boxes(2), atol=0.06)


def test_pixels_are_the_image_as_jpeg(site):
    _, client, root, _ = site
    r = client.get("/api/images/1/pixels")
    assert r.mimetype == "image/jpeg"
    got = np.asarray(Image.open(io.BytesIO(r.data)), np.float32)
    want = np.asarray(Image.open(root / "img01.png").convert("RGB"), np.float32)
    assert got.shape == want.shape
    blocks = lambda a: a.reshape(6, 16, 8, 16, 3).mean(axis=(1, 3))  # JPEG keeps 16x16 means, not noise
    assert np.abs(blocks(got) - blocks(want)).max() < 6
    thumb = Image.open(io.BytesIO(client.get("/api/images/1/pixels?max_side=32").data))
    assert thumb.size == (32, 24)
    assert "max_side" in error_of(client.get("/api/images/1/pixels?max_side=../../x"), 400)


@pytest.mark.parametrize("url", [
    "/api/images/../../etc/passwd", "/api/images/..%2F..%2Fetc%2Fpasswd", "/api/images//etc/passwd",
    "/api/images/%2Fetc%2Fpasswd/pixels", "/api/images/-1", "/api/images/6", "/api/images/6/pixels",
    "/api/images/img00.png/pixels",
])
def test_only_indexed_images_are_served_by_id(site, url):
    _, client, _, _ = site
    r = client.get(url)
    assert r.status_code == 404 and b"root:" not in r.data and r.mimetype == "application/json"


@pytest.mark.parametrize("image_id", [4, 5])
def test_stored_names_leading_out_of_the_collection_are_refused(site, image_id):
    """A symbolic link out of the root (4) and a stored ``../`` name (5): the file exists, is not served."""
    _, client, _, _ = site
    assert "not a file inside the collection" in error_of(client.get(f"/api/images/{image_id}/pixels"), 404)
    assert "not a file inside the collection" in error_of(
        client.post("/api/search", json={"image_id": image_id, "box": [0, 0, 100, 90]}), 404)


def test_a_json_search_returns_ranked_hits_with_boxes(site):
    engine, client, _, _ = site
    r = client.post("/api/search", json={"image_id": 1, "box": [5, 5, 120, 90], "top": 3})
    body = r.get_json()
    direct = engine.search_image(1, (5.0, 5.0, 120.0, 90.0), top=3)
    assert [h["image_id"] for h in body["hits"]] == [h.image_id for h in direct.hits]
    assert [h["box"] for h in body["hits"]] == [h.box for h in direct.hits]
    assert body["query"] == "image 1" and body["box"] == [5.0, 5.0, 120.0, 90.0] and body["ap"] is None
    assert 0 < body["seconds"] < 60


@pytest.mark.parametrize("body, words", [
    ({"image_id": 0, "box": [300, 10, 400, 50]}, "outside"),
    ({"image_id": 0, "box": [10, 10, 10, 50]}, "zero or negative area"),
    ({"image_id": 0, "box": [10, 10, 20, 20]}, "feature cell"),
    ({"image_id": 0, "box": [1, 2, 3]}, "four numbers"),
    ({"image_id": 0, "box": "1,2,x,4"}, "four numbers"),
    ({"image_id": 0, "box": [0, 0, 50, 50], "top": 0}, "top must be"),
    ({"image_id": "../0", "box": [0, 0, 50, 50]}, "image_id must be an integer"),
    ({"box": [0, 0, 50, 50]}, "needs 'image_id'"),
    ({"query_id": 0}, "no benchmark"),
    ([1, 2], "JSON object"),
])
def test_invalid_searches_get_a_one_line_4xx(site, body, words):
    _, client, _, _ = site
    r = client.post("/api/search", json=body)
    assert r.status_code in (400, 404)
    assert words in error_of(r, r.status_code)


def test_a_body_that_is_neither_json_nor_a_form_is_refused(site):
    _, client, _, _ = site
    assert "send JSON" in error_of(client.post("/api/search", data=b"x", content_type="text/plain"), 400)
    assert "JSON object" in error_of(client.post("/api/search", data=b"{nope", content_type="application/json"), 400)


def test_an_uploaded_photo_is_searched(site):
    engine, client, root, _ = site
    data = (root / "img03.png").read_bytes()
    r = client.post("/api/search", data={"upload": (io.BytesIO(data), "mine.png"), "box": "0,0,128,96",
                                         "top": "4"}, content_type="multipart/form-data")
    body = r.get_json()
    assert r.status_code == 200 and body["query"] == "upload" and len(body["hits"]) == 4
    same = engine.search_image(3, (0.0, 0.0, 128.0, 96.0), top=4)
    assert [h["image_id"] for h in body["hits"]] == [h.image_id for h in same.hits]


def test_bad_uploads_get_a_one_line_error(site):
    _, client, root, _ = site
    form = {"upload": (io.BytesIO(b"GIF89a but not really"), "x.gif"), "box": "0,0,50,50"}
    assert error_of(client.post("/api/search", data=form, content_type="multipart/form-data"), 400).startswith("upload: ")
    form = {"box": "0,0,50,50"}
    assert "'upload'" in error_of(client.post("/api/search", data=form, content_type="multipart/form-data"), 400)
    form = {"upload": (io.BytesIO((root / "img00.png").read_bytes()), "x.png"), "box": "300,10,400,50"}
    assert "outside" in error_of(client.post("/api/search", data=form, content_type="multipart/form-data"), 400)


def test_uploads_beyond_the_limit_are_refused_before_decoding(site):
    engine, _, root, _ = site
    data = (root / "img00.png").read_bytes()
    small = SearchEngine(engine.index, engine.whitening, engine.extractor, max_upload_bytes=len(data) - 1)
    client = create_app(small).test_client()
    form = {"upload": (io.BytesIO(data), "x.png"), "box": "0,0,50,50"}
    assert "more than" in error_of(client.post("/api/search", data=form, content_type="multipart/form-data"), 413)
    # The whole body beyond the limit: Werkzeug stops reading it (413 too).
    form = {"upload": (io.BytesIO(data * 200), "x.png"), "box": "0,0,50,50"}
    error_of(client.post("/api/search", data=form, content_type="multipart/form-data"), 413)
