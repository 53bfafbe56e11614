"""The review page in a real browser: Debian's headless chromium, driven through chromedriver
(WebDriver), against `dcd serve --http-addr` with an API key. The page is opened, signed in
to, a set is built from uploaded images, the grid and the map render, two items are rejected,
one relabelled, one accepted from the keyboard, and the next round is built; gRPC then shows
that the round left the reviewed items out and took the rejections as negatives. Bad input
(an upload that is not an image, a set that does not exist, a thumbnail outside the allowed
roots, a request without the key) gets its message and code. The first paint of a saved set
of 5,000 items is measured with the browser's clock and reported, not asserted."""

import json
import os
import pathlib
import random
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from dcd_client import Client
from conftest import REPO, Server

KEY = "k3y"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: scripts/test.sh installs them")
        pytest.skip("chromium / chromedriver not installed (scripts/test.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,900", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))


def _stripes(rng, side=48):
    period = rng.randrange(6, 12)
    a = [rng.randrange(0, 40) for _ in range(3)]
    b = [rng.randrange(215, 256), rng.randrange(190, 231), rng.randrange(0, 40)]
    img = Image.new("RGB", (side, side))
    img.putdata([tuple(a if ((x + y) // (period // 2)) % 2 == 0 else b)
                 for y in range(side) for x in range(side)])
    return img


def _smooth(rng, side=48):
    c0 = [rng.randrange(256) for _ in range(3)]
    c1 = [rng.randrange(256) for _ in range(3)]
    img = Image.new("RGB", (side, side))
    img.putdata([tuple((c0[i] * (side - x) + c1[i] * x) // side for i in range(3))
                 for y in range(side) for x in range(side)])
    return img


@pytest.fixture
def page_server(tmp_path):
    s = Server(tmp_path, "--api-key", KEY, "--http-addr", "127.0.0.1:0")
    yield s
    s.stop()


def _wait(driver, what, timeout=30):
    # The page re-renders its grid after every verdict: an element read mid-render is asked
    # for again.
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: what(d))


def _message(driver):
    el = driver.find_element(By.ID, "message")
    return "" if el.get_attribute("hidden") is not None else el.text


def _fetch_status(driver, path):
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(async r => done([r.status, await r.text()]));",
        path)


def test_review_loop_in_a_browser(page_server, tmp_path):
    rng = random.Random(4)
    pool_dir = tmp_path / "pool"
    for i in range(240):
        label = rng.choice(["cat", "dog", "car", "tree"])
        (pool_dir / label).mkdir(parents=True, exist_ok=True)
        (_stripes(rng) if i < 40 else _smooth(rng)).save(pool_dir / label / f"img{i:04d}.png")
    uploads = []
    for i in range(3):
        p = tmp_path / f"failure{i}.png"
        _stripes(rng).save(p)
        uploads.append(str(p))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    weights = str(REPO / "tests" / "fixtures" / "backbones" / "resnet-tiny.pth")
    with Client(page_server.url, api_key=KEY) as dcd:
        dcd.create_pool("pool", backbone="resnet", weights=weights)
        dcd.ingest_folder("pool", pool_dir)
        # Raw vectors: 5,200 rows for the first-paint measure, one keyed outside the roots.
        vecs = np.random.default_rng(1).normal(size=(5200, 16)).astype(np.float32)
        keys = [f"{tmp_path}/big/{i}.png" for i in range(5199)] + ["/etc/hostname"]
        dcd.create_pool("big", dim=16)
        dcd.ingest_vectors("big", vecs, keys, ["a" if i % 3 else "b" for i in range(5200)])
        big = dcd.debug_set("big", errors=[vecs[:150] + 0.01], k=400, budget=5000, exact=True,
                            max_modes=1, save_as="big-set")
        assert len(big.items) == 5000

    driver = _browser()
    try:
        page = page_server.page
        # Without the key the API says 401 and the page asks for it.
        driver.get(page)
        _wait(driver, lambda d: d.find_element(By.ID, "login").get_attribute("open") is not None)
        assert _fetch_status(driver, "/api/pools")[0] == 401
        driver.find_element(By.ID, "login-key").send_keys("wrong" + Keys.ENTER)
        _wait(driver, lambda d: "wrong" in d.find_element(By.ID, "login-error").text)
        key_input = driver.find_element(By.ID, "login-key")
        key_input.clear()
        key_input.send_keys(KEY + Keys.ENTER)
        _wait(driver, lambda d: "pool" in d.find_element(By.ID, "view").text and "big" in d.find_element(By.ID, "view").text)

        # Build a set from uploaded images; an upload that is not an image is refused first.
        driver.get(page + "#/build?pool=pool")
        _wait(driver, lambda d: d.find_elements(By.ID, "build-form"))
        driver.find_element(By.ID, "errors").send_keys(str(not_an_image))
        name = driver.find_element(By.ID, "save-as")
        name.clear()
        name.send_keys("round-1")
        driver.find_element(By.ID, "k").clear()
        driver.find_element(By.ID, "k").send_keys("10")
        driver.find_element(By.ID, "build-go").click()
        _wait(driver, lambda d: "not a usable image" in _message(d))
        driver.find_element(By.ID, "errors").clear()
        driver.find_element(By.ID, "errors").send_keys("\n".join(uploads))
        driver.find_element(By.ID, "build-go").click()
        _wait(driver, lambda d: d.current_url.endswith("#/set/round-1") and d.find_elements(By.CSS_SELECTOR, ".card"))

        # The map draws, the thumbnails load.
        _wait(driver, lambda d: int(d.find_element(By.ID, "map").get_attribute("data-drawn") or 0) > 0)
        painted = driver.execute_script(
            "const c = document.getElementById('map'); const g = c.getContext('2d');"
            "const px = g.getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n;")
        assert painted > 50, painted
        _wait(driver, lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('.card img')].slice(0, 4);"
            "return imgs.length == 4 && imgs.every(i => i.complete && i.naturalWidth > 0);"))
        _wait(driver, lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('#strip-random img')].slice(0, 4);"
            "return imgs.length == 4 && imgs.every(i => i.complete && i.naturalWidth > 0);"))

        driver.save_screenshot(str(REPO / "target" / "review-page.png"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        keys = [c.get_attribute("data-key") for c in cards[:4]]
        # Reject two with the mouse, relabel one, accept one from the keyboard.
        for i in range(2):
            driver.find_elements(By.CSS_SELECTOR, ".card")[i].find_element(By.CSS_SELECTOR, "button.reject").click()
            _wait(driver, lambda d, i=i: "reject" in d.find_elements(By.CSS_SELECTOR, ".card")[i].get_attribute("class"))
        third = driver.find_elements(By.CSS_SELECTOR, ".card")[2]
        third.find_element(By.CSS_SELECTOR, "button.relabel").click()
        driver.find_element(By.CSS_SELECTOR, ".relabel-input").send_keys("fixed" + Keys.ENTER)
        _wait(driver, lambda d: "relabel" in d.find_elements(By.CSS_SELECTOR, ".card")[2].get_attribute("class"))
        driver.execute_script("document.getElementById('grid-area').scrollIntoView()")
        driver.save_screenshot(str(REPO / "target" / "review-page-grid.png"))
        fourth = driver.find_elements(By.CSS_SELECTOR, ".card")[3]
        driver.execute_script("arguments[0].focus()", fourth)
        fourth.send_keys("a")
        _wait(driver, lambda d: "accept" in d.find_elements(By.CSS_SELECTOR, ".card")[3].get_attribute("class"))
        # Keyboard focus moved on to the next card.
        assert driver.execute_script("return document.activeElement.dataset.index") == "4"

        with Client(page_server.url, api_key=KEY) as dcd:
            marks = {i.key: i.review.verdict for i in dcd.get_debug_set("round-1").items if i.review}
        assert marks == {keys[0]: "reject", keys[1]: "reject", keys[2]: "relabel", keys[3]: "accept"}

        # The next round, from the page.
        next_name = driver.find_element(By.ID, "next-name")
        next_name.clear()
        next_name.send_keys("round-2")
        driver.find_element(By.ID, "next-round").click()
        _wait(driver, lambda d: d.current_url.endswith("#/set/round-2") and d.find_elements(By.CSS_SELECTOR, ".card"))
        with Client(page_server.url, api_key=KEY) as dcd:
            r2 = dcd.get_debug_set("round-2")
        assert r2.parent == "round-1"
        assert not {i.key for i in r2.items} & set(keys), "reviewed items stay out of the next round"
        assert [c["key"] for c in r2.manifest["carry"]["rejected"]] == keys[:2]
        assert sorted(c["key"] for c in r2.manifest["carry"]["accepted"]) == sorted(keys[2:4])
        assert r2.summary["round"]["rejected"] == 2

        # Bad input: a set that does not exist, a thumbnail outside the allowed roots.
        driver.get(page + "#/set/no-such-set")
        _wait(driver, lambda d: "no saved debug-train set named" in _message(d))
        status, body = _fetch_status(driver, "/api/thumb/big/5199")
        assert status == 403 and "allow" in body, (status, body)
        status, body = _fetch_status(driver, "/api/sets/round-1/review")
        assert status == 405, status

        # First paint of a saved set of 5,000 items, on a fresh load.
        driver.get("about:blank")
        driver.get(page + "#/set/big-set")
        _wait(driver, lambda d: d.execute_script("return window.dcdRendered !== undefined"), timeout=60)
        first_paint_ms = driver.execute_script("return window.dcdRendered")
        cards = len(driver.find_elements(By.CSS_SELECTOR, ".card"))
        assert cards == 120, cards
        report = {"items": 5000, "first_paint_ms": round(first_paint_ms, 1), "cards_on_first_page": cards}
        out = REPO / "target" / "review-page-first-paint.json"
        out.write_text(json.dumps(report) + "\n")
        print("review page first paint:", report)
        # Pages beyond the first: the grid pages through the 5,000.
        driver.find_element(By.ID, "next-page").click()
        _wait(driver, lambda d: "page 2 of 42" in d.find_element(By.ID, "grid-area").text)
    finally:
        driver.quit()
