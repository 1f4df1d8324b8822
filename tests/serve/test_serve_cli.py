"""``dasr serve``: the command starts the page on 127.0.0.1 and says where; a bad index is one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from conftest import REPO
from dasr.cli import main
from serve_helpers import tiny_extractor, write_images, write_store

pytestmark = pytest.mark.timeout(240)


def test_serve_starts_on_localhost_and_answers(tmp_path):
    names = write_images(tmp_path / "photos", 3)
    store = write_store(tmp_path / "index.h5", tmp_path / "photos", names, tiny_extractor())
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "dasr.cli", "serve", "--store", os.fspath(store), "--port", "0",
                             "--pca", "none", "--weights", "random"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # the index line, then the page's address
            lines.append(line)
            if line.startswith("search page:"):
                break
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1])
        assert url, lines
        assert "3 images" in lines[0] and "whitening: none" in lines[0]
        with urllib.request.urlopen(url.group(0) + "api/info", timeout=30) as r:
            assert json.load(r)["names"] == names
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_missing_index_is_one_line(tmp_path, capsys):
    assert main(["serve", "--index", os.fspath(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dasr: error:") and "nope.h5" in err and "\n" not in err
