"""End to end in a real browser: headless Debian Chromium (Selenium) against a server started here.

Opens the page, picks a query, draws its box with mouse events (then drags a corner to adjust
it), waits for the results and checks that the top results are shown with their matched boxes
drawn, in the library's order; saves a screenshot.

Skipped when Chromium or its driver is absent (``.ci/run`` installs Debian's ``chromium`` and
``chromium-driver``).  By default the index is a tiny random one; the README's screenshot comes
from the demo index::

    DASR_BROWSER_INDEX=results/demo/stores/.../database.h5 DASR_BROWSER_BENCHMARK_ROOT=data/demo \\
    DASR_SCREENSHOT=data/demo/search-page.png pytest tests/serve/test_serve_browser.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from PIL import Image

from dasr.serve import SearchEngine, page_server
from serve_helpers import engine_for, tiny_extractor, write_images, write_store

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason="no headless browser: apt-get install chromium chromium-driver (.ci/run does)"),
]
WAIT_S = 90
# Flags: no sandbox (root in a container), nothing fetched or updated in the background.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1300")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    index = os.environ.get("DASR_BROWSER_INDEX")
    if index:
        return SearchEngine.open(index, pca="none", benchmark="instance-track",
                                 benchmark_root=os.environ.get("DASR_BROWSER_BENCHMARK_ROOT"))
    base = tmp_path_factory.mktemp("serve-browser")
    names = write_images(base / "photos", 8)
    extractor = tiny_extractor()
    return engine_for(write_store(base / "index.h5", base / "photos", names, extractor), extractor)


@pytest.fixture(scope="module")
def server(engine):
    httpd = page_server(engine, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="dasr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def results_done(driver, after: str | None):
    """The result cards once a search newer than ``after`` (the previous query box) is shown."""
    if driver.find_element(By.ID, "results").get_attribute("data-state") != "done":
        return False
    if driver.find_element(By.ID, "query-box").text == after:
        return False
    return driver.find_elements(By.CSS_SELECTOR, ".result")


def shown_box(driver) -> tuple[float, ...]:
    return tuple(float(v) for v in driver.find_element(By.ID, "query-box").text.split(" ", 1)[1].split(","))


def test_draw_a_box_and_see_the_results(server, browser, engine, tmp_path):
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert engine.info().method in browser.find_element(By.ID, "index-info").text
    assert "whitening" in browser.find_element(By.ID, "index-info").text

    benchmark_queries = browser.find_elements(By.CSS_SELECTOR, "#query-list li")
    canvas = browser.find_element(By.ID, "query-canvas")
    if benchmark_queries:  # the demo index: a benchmark query comes with its box, searched at once
        benchmark_queries[0].click()
        wait.until(lambda d: results_done(d, None))
        image_id = None
    else:
        browser.find_element(By.CSS_SELECTOR, "#image-list li").click()
        wait.until(lambda d: d.find_element(By.ID, "query-canvas").get_attribute("data-ready") == "1")
        image_id = 0
        w, h = canvas.size["width"], canvas.size["height"]
        # Offsets are from the canvas's centre: a box over its middle 80% x 75%.
        (ActionChains(browser).move_to_element_with_offset(canvas, int(-0.4 * w), int(-0.375 * h))
         .click_and_hold().move_by_offset(int(0.4 * w), int(0.375 * h)).move_by_offset(int(0.4 * w), int(0.375 * h))
         .release().perform())
        wait.until(lambda d: results_done(d, ""))
        box = shown_box(browser)
        assert box[0] == pytest.approx(0.1 * 128, abs=3) and box[3] == pytest.approx(0.875 * 96, abs=3)

    # Adjust: drag the bottom-right corner inwards; a new search runs with the new box.
    before = browser.find_element(By.ID, "query-box").text
    old = shown_box(browser)
    scale = canvas.size["width"] / browser.execute_script("return state.query.width;")  # screen px per image px
    cx, cy = canvas.size["width"] / 2, canvas.size["height"] / 2
    corner = (old[2] * scale - cx, old[3] * scale - cy)
    (ActionChains(browser).move_to_element_with_offset(canvas, int(corner[0]), int(corner[1])).click_and_hold()
     .move_by_offset(-int(0.1 * (old[2] - old[0]) * scale), -int(0.1 * (old[3] - old[1]) * scale)).release().perform())
    cards = wait.until(lambda d: results_done(d, before))
    new = shown_box(browser)
    assert new[:2] == pytest.approx(old[:2], abs=1.5) and new[2] < old[2] and new[3] < old[3]

    # The top results, each with its matched box drawn, in the library's order for this box.
    assert len(cards) >= 3
    for card in cards[:3]:
        assert card.find_element(By.TAG_NAME, "canvas").get_attribute("data-box-drawn") == "1"
        assert len(card.get_attribute("data-box").split(",")) == 4
    if image_id is not None:
        expected = engine.search_image(image_id, new, top=10)
        assert [int(c.get_attribute("data-image-id")) for c in cards] == [h.image_id for h in expected.hits]
    else:
        assert browser.find_element(By.ID, "ap").text.startswith("AP ")

    # Open the first result large, with all its regions.
    cards[0].find_element(By.TAG_NAME, "canvas").click()
    wait.until(lambda d: d.find_element(By.ID, "viewer").is_displayed())
    assert "stored regions" in browser.find_element(By.ID, "viewer-legend").text
    browser.find_element(By.ID, "viewer-close").click()

    shot = tmp_path / "search-page.png"
    assert browser.save_screenshot(os.fspath(shot)) and Image.open(shot).size[0] > 0
    target = os.environ.get("DASR_SCREENSHOT")
    if target:  # the README's picture: fewer colours, a small PNG
        Image.open(shot).convert("RGB").quantize(colors=128).save(Path(target), optimize=True)
