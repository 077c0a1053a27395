"""The `dynsr compare` report in a real browser: headless Chromium driven by selenium.

Chromium and chromedriver come from Debian's packages (`apt-get install chromium
chromium-driver`, done by .ci/run); without them the tests fail, they never skip. The
reports are made from 48x48 crops of scikit-image's photos (grey, transparent and 16-bit
ones too) with bicubic, DyConvSR and UDVD-lite, so the file runs in seconds.
"""

import math
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from dynsr.cli.main import main
from dynsr.io import write_image
from dynsr.report.kernels import decode_taps

# Chromium as root in CI: no sandbox, nothing fetched in the background, a fresh profile.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def _browser_or_fail():
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if binary is None or driver is None or webdriver is None:
        missing = ("selenium (pip install -e '.[test]')" if webdriver is None
                   else "chromium and chromedriver (apt-get install chromium chromium-driver)")
        # Never skipped: a report nobody checked in a browser is not tested (.ci/run installs
        # them).
        pytest.fail(f"browser tests need {missing}")
    return webdriver, binary, driver


@pytest.fixture(scope="module")
def browser():
    webdriver, binary, driver_path = _browser_or_fail()
    profile = tempfile.mkdtemp(prefix="dynsr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A one-image report with scores and kernels, and a two-image folder report."""
    root = tmp_path_factory.mktemp("reports")
    hr = root / "hr"
    hr.mkdir()
    Image.fromarray(skimage.data.chelsea()[80:176, 140:236]).save(hr / "cat.png")
    single = root / "single"
    assert main(["compare", str(hr / "cat.png"), "--from-hr", "--models", "dyconvsr,udvd-lite",
                 "--kernels", "--figure", "--crop", "10,20,24", "--blur", "0.8",
                 "-o", str(single)]) == 0
    lr = root / "lr"
    lr.mkdir()
    Image.fromarray(skimage.data.coffee()[150:198, 200:248]).save(lr / "coffee.png")
    Image.fromarray(skimage.data.astronaut()[30:78, 200:248]).save(lr / "astronaut.png")
    # Grey, transparent and 16-bit inputs: their results must decode in the browser too.
    Image.fromarray(skimage.data.camera()[200:240, 200:244]).save(lr / "gray.png")
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (40, 1))
    Image.fromarray(np.dstack([skimage.data.astronaut()[40:80, 200:240], alpha]), "RGBA").save(
        lr / "alpha.png")
    deep = torch.from_numpy(skimage.data.coffee()[100:136, 200:236] / 255.0).permute(2, 0, 1)
    write_image(lr / "deep.png", deep, bit_depth=16)
    folder = root / "folder"
    assert main(["compare", str(lr), "--models", "dyconvsr", "-o", str(folder)]) == 0
    return single, folder


def _open(browser, path: Path) -> None:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(path.as_uri())
    browser.implicitly_wait(0)
    # The page script marks the body when it has built the page; then wait for every image.
    for _ in range(200):
        done = browser.execute_script(
            "return document.readyState === 'complete' && (document.body.dataset.ready === "
            "'true' || !document.getElementById('report-data')) && "
            "Array.from(document.images).every(i => i.complete)")
        if done:
            return
        browser.execute_script("return new Promise(r => setTimeout(r, 25))")
    pytest.fail(f"{path} did not finish loading")


def _check_clean(browser, path: Path) -> None:
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"{path}: console errors {severe}"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert images, f"{path}: no images"
    broken = [src for src, width in images if not width]
    assert not broken, f"{path}: images that did not decode: {broken}"


def test_pages_load_without_console_errors_and_every_image_decodes(browser, reports):
    single, folder = reports
    pages = [single / "index.html", folder / "index.html", *sorted(folder.glob("*.html"))]
    for page in dict.fromkeys(pages):
        _open(browser, page)
        _check_clean(browser, page)
    _open(browser, single / "index.html")
    # Every result in the zoom row, the crop figure among the figures, and scores shown.
    keys = browser.execute_script(
        "return Array.from(document.querySelectorAll('.crop')).map(c => c.dataset.key)")
    assert keys == ["lr", "bicubic", "dyconvsr", "udvd-lite", "hr"]
    figures = browser.execute_script(
        "return Array.from(document.querySelectorAll('.figures img')).map(i => "
        "[i.getAttribute('src'), i.naturalWidth])")
    assert figures == [["cat/crops.png", Image.open(single / "cat" / "crops.png").width]]
    # Scores and times as report.json has them (PSNR-Y of dyconvsr to 2 decimals).
    import json
    saved = json.loads((single / "report.json").read_text())["pages"][0]["results"]
    dyconvsr = next(r for r in saved if r["key"] == "dyconvsr")
    row = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.scores tbody tr'))"
        ".map(r => r.innerText)")[2]
    assert f"{dyconvsr['psnr_y']:.2f}" in row and f"{dyconvsr['seconds']:.2f}" in row


def _overlay_width(browser) -> float:
    return browser.execute_script(
        "return document.getElementById('overlay').getBoundingClientRect().width")


def _shown_at(browser, fraction: float) -> str:
    """The result whose picture the before/after view shows at ``fraction`` of its width."""
    return browser.execute_script("""
        const box = document.getElementById('view').getBoundingClientRect();
        const hit = document.elementFromPoint(box.left + arguments[0] * box.width,
                                              box.top + box.height / 2);
        return hit.alt;""", fraction)


def test_slider_and_keys_change_what_is_shown(browser, reports):
    from selenium.webdriver.common.keys import Keys

    single, _ = reports
    _open(browser, single / "index.html")
    view_width = browser.execute_script(
        "return document.getElementById('view').getBoundingClientRect().width")
    assert _overlay_width(browser) == pytest.approx(view_width / 2, abs=1)
    left, right = browser.execute_script(
        "return [document.getElementById('left'), document.getElementById('right')]"
        ".map(s => s.selectedOptions[0].text)")
    assert left != right
    assert _shown_at(browser, 0.45) == left and _shown_at(browser, 0.55) == right

    slider = browser.find_element("id", "divider")
    slider.send_keys(*[Keys.ARROW_LEFT] * 100)  # 100 of 1000 steps: the divider to 40 %
    assert _overlay_width(browser) == pytest.approx(view_width * 0.4, abs=1)
    assert _shown_at(browser, 0.45) == right  # uncovered: now the right-hand picture
    assert _shown_at(browser, 0.35) == left

    body = browser.find_element("tag name", "body")
    body.click()
    body.send_keys(Keys.SHIFT + Keys.ARROW_RIGHT)  # the page's own keys: +10 %
    assert _overlay_width(browser) == pytest.approx(view_width * 0.5, abs=1)
    assert browser.find_element("id", "divider").get_attribute("value") == "500"
    body.send_keys("1")  # the right-hand picture becomes result 1, the LR
    assert browser.execute_script(
        "return document.querySelector('#view img.base').getAttribute('src')") == "cat/lr.png"
    assert _shown_at(browser, 0.75) == "LR (nearest)"


def _crop_rectangles(browser) -> list[list[float]]:
    """Each zoom crop's source rectangle (x, y, w, h in SR pixels), measured from where its
    picture is drawn inside its window, not from the page's own bookkeeping."""
    return browser.execute_script("""
        const data = JSON.parse(document.getElementById('report-data').textContent).page;
        const [W, H] = data.sr_size;
        return Array.from(document.querySelectorAll('.crop')).map(c => {
            const win = c.querySelector('.window').getBoundingClientRect();
            const img = c.querySelector('img').getBoundingClientRect();
            const sx = img.width / W, sy = img.height / H;
            return [(win.left - img.left) / sx, (win.top - img.top) / sy,
                    win.width / sx, win.height / sy];
        });""")


def _assert_synchronized(rects, point=None):
    first = rects[0]
    for rect in rects[1:]:
        assert rect == pytest.approx(first, abs=0.02)
    for value in first:  # integer pixels: pixel-exact crops
        assert value == pytest.approx(round(value), abs=0.02)
    if point is not None:
        x, y = point
        assert first[0] <= x < first[0] + first[2] and first[1] <= y < first[1] + first[3]


def _click_view(browser, fx: float, fy: float) -> tuple[float, float]:
    """Click the before/after view at a fraction of its size; the SR pixel clicked."""
    from selenium.webdriver import ActionChains

    view = browser.find_element("id", "view")
    box = browser.execute_script("return arguments[0].getBoundingClientRect()", view)
    dx, dy = (fx - 0.5) * box["width"], (fy - 0.5) * box["height"]
    ActionChains(browser).move_to_element_with_offset(view, int(dx), int(dy)).click().perform()
    size = browser.execute_script(
        "return JSON.parse(document.getElementById('report-data').textContent).page.sr_size")
    return ((int(dx) + box["width"] / 2) * size[0] / box["width"],
            (int(dy) + box["height"] / 2) * size[1] / box["height"])


def test_zoom_crops_stay_synchronized(browser, reports):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.support.ui import Select

    single, _ = reports
    _open(browser, single / "index.html")
    # The page opens on the --crop square, as the crop figure shows it.
    before = _crop_rectangles(browser)[0]
    assert before == pytest.approx([10, 20, 24, 24], abs=0.02)
    _assert_synchronized(_crop_rectangles(browser))
    point = _click_view(browser, 0.2, 0.8)
    after = _crop_rectangles(browser)
    _assert_synchronized(after, point)
    assert after[0][:2] != before[:2]
    # The LR crop is the same pixels enlarged: its picture is drawn at the scale times the
    # zoom, pixelated.
    lr = browser.execute_script(
        "const i = document.querySelector('.crop[data-key=lr] img');"
        "return [i.naturalWidth, i.getBoundingClientRect().width, getComputedStyle(i)"
        ".imageRendering]")
    zoom = int(Select(browser.find_element("id", "zoom")).first_selected_option.get_attribute(
        "value"))
    assert lr == [48, 48 * 2 * zoom, "pixelated"]

    # A click inside a crop moves every crop; so does another zoom factor.
    window = browser.find_element("css selector", ".crop[data-key=dyconvsr] .window")
    ActionChains(browser).move_to_element_with_offset(window, 30, -30).click().perform()
    moved = _crop_rectangles(browser)
    _assert_synchronized(moved)
    assert moved[0][:2] != after[0][:2]
    Select(browser.find_element("id", "zoom")).select_by_value("2")
    zoomed_out = _crop_rectangles(browser)
    _assert_synchronized(zoomed_out)
    assert zoomed_out[0][2] == pytest.approx(88)  # 176 CSS pixels / 2


def test_kernels_at_the_clicked_point(browser, reports):
    single, _ = reports
    _open(browser, single / "index.html")
    point = _click_view(browser, 0.3, 0.65)
    where = browser.find_element("id", "kernel-where")
    shown = (int(where.get_attribute("data-x")), int(where.get_attribute("data-y")))
    # What cat/udvd-lite.kernels.js gave the page (decoded below by the Python reader).
    encoded = browser.execute_script("return window.dynsrKernels['udvd-lite']")
    # The nearest sampled point to the click, as the page says.
    gi = min(range(len(encoded["rows"])), key=lambda i: abs(encoded["rows"][i] - int(point[1])))
    gj = min(range(len(encoded["cols"])), key=lambda j: abs(encoded["cols"][j] - int(point[0])))
    assert shown == (encoded["cols"][gj], encoded["rows"][gi])
    # Each block's canvas holds that point's kernel, in the page's colours.
    pixels = browser.execute_script("""
        return Array.from(document.querySelectorAll('canvas.kernel')).map(c =>
            Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data));""")
    blocks = decode_taps(encoded)
    assert len(pixels) == len(blocks) == 3
    for drawn, block in zip(pixels, blocks, strict=True):
        kernel = block[gi, gj].ravel()
        peak = max(abs(float(v)) for v in kernel)
        for i, value in enumerate(kernel):
            t = float(value) / peak
            fade = 255 * (1 - abs(t))
            want = (255, fade, fade) if t >= 0 else (fade, fade, 255)
            assert drawn[4 * i:4 * i + 3] == pytest.approx(want, abs=1.01)
    markers = browser.execute_script(
        "return Array.from(document.querySelectorAll('.crop .marker')).filter(m => !m.hidden)"
        ".length")
    assert markers == 5


def test_folder_index_links_every_page(browser, reports):
    _, folder = reports
    index = folder / "index.html"
    _open(browser, index)
    _check_clean(browser, index)
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a.page-link')).map(a => [a.href, "
        "a.textContent])")
    assert sorted(name for _, name in links) == ["alpha", "astronaut", "coffee", "deep", "gray"]
    for href, name in links:
        target = Path(unquote(urlparse(href).path))
        assert target.is_file() and target.parent == folder
        _open(browser, target)
        _check_clean(browser, target)
        assert browser.find_element("tag name", "h1").text == name
        up = browser.execute_script("return document.querySelector('#nav a').href")
        assert Path(unquote(urlparse(up).path)) == index
    # Only LR inputs: times, no scores.
    _open(browser, index)
    assert "no scores" in browser.find_element("css selector", ".lead").text
    assert not math.isnan(float(browser.find_element("css selector", "td.num small").text
                                .split()[0]))
