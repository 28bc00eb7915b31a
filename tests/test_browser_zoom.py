"""Label page in chromium, zoomed: on a 3840x2160 frame zoom in and pan with the keys to a cow of
40x25 px, drag a box around it, Save with S: the stored box is within 2 px of it in original
pixels. And a suggested image: it opens with its suggestions, A stores them as ground truth."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

import ui
from apprunner import CHROMIUM, CHROMIUM_ARGS, require_chromium, serve_app, settle
from cowdetect.detections import Detections
from cowdetect.images import encode_image
from cowdetect.store import Store
from test_browser_label import box_count, caption, drag, show, wait_for_boxes

COW = (2600, 1400, 2640, 1425)  # xyxy original px of the 40x25 'cow' on the 4K frame
SUGGESTED = [[40, 50, 160, 130], [300, 100, 420, 200]]


def frame() -> np.ndarray:
    """A 3840x2160 RGB frame: a grey-green gradient field with a dark 40x25 cow at COW."""
    x = np.linspace(60, 140, 3840, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 40, 2160, dtype=np.float32)[:, None, None]
    rgb = np.broadcast_to(x + y + np.array([0, 30, 0], np.float32), (2160, 3840, 3)).astype(np.uint8)
    x1, y1, x2, y2 = COW
    rgb[y1:y2, x1:x2] = (40, 25, 20)
    return rgb


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    from playwright.sync_api import sync_playwright

    store = Store(tmp_path_factory.mktemp("browser-zoom") / "data")
    big = store.add_image(encode_image(frame(), "JPEG", 95), "frame-4k.jpg")[0]  # as import-video stores frames
    rgb = np.full((360, 640, 3), 120, np.uint8)
    small = store.add_image(encode_image(rgb, "PNG"), "suggested.png")[0]
    store.set_suggestions(small.id, Detections.from_names(SUGGESTED, ["cow"] * 2, store.class_names(),
                                                          score=[0.9, 0.7]), "cow-ft (#3)")
    with serve_app(store.data_dir) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        page.goto(url + "/label")
        page.locator("canvas.upper-canvas >> visible=true").first.wait_for(timeout=60_000)
        yield page, store, big, small
        browser.close()


def view(page) -> tuple[int, float, float, float, float]:
    """(zoom, x0, y0, x1, y1) of the caption 'zoom 8× · x 2400–2880, y 1350–1620 px'."""
    text = page.get_by_text(re.compile(r"^zoom \d+×")).first.inner_text(timeout=30_000)
    found = re.match(r"zoom (\d+)× · x (\d+)–(\d+), y (\d+)–(\d+) px", text)
    assert found, text
    return int(found[1]), float(found[2]), float(found[4]), float(found[3]), float(found[5])


def press(page, key: str) -> None:
    """Press a view key and wait until the caption shows the new view and the run is over."""
    settle(page)
    before = view(page)
    page.keyboard.press(key)
    deadline = time.monotonic() + 30
    while view(page) == before:
        assert time.monotonic() < deadline, f"key {key} did not change the view {before}"
        page.wait_for_timeout(100)
    page.locator("canvas.upper-canvas >> visible=true").first.wait_for(timeout=30_000)
    settle(page)


def test_a_box_drawn_zoomed_in_lands_within_2_px_in_original_pixels(served):
    page, store, big, _ = served
    show(page, store, big)
    for _ in range(3):  # fit (0.1875 canvas px per image px: the cow is 7.5x4.7 canvas px) → 8×
        press(page, "z")
    margin = 20
    while True:  # pan with the keys, half a view a press, until the cow is well inside the view
        zoom, x0, y0, x1, y1 = view(page)
        moves = [key for key, wrong in (("j", COW[0] - margin < x0), ("l", COW[2] + margin > x1),
                                        ("i", COW[1] - margin < y0), ("k", COW[3] + margin > y1)) if wrong]
        if not moves:
            break
        press(page, moves[0])
    assert zoom == 8
    canvas = page.locator("canvas.upper-canvas >> visible=true").first
    where = canvas.bounding_box()
    width, _, fit = ui.canvas_size(big.width, big.height)
    px = fit * zoom * where["width"] / width  # CSS px per original px
    ax, ay = where["x"] + (COW[0] - x0) * px, where["y"] + (COW[1] - y0) * px
    bx, by = where["x"] + (COW[2] - x0) * px, where["y"] + (COW[3] - y0) * px
    drag(page, ax, ay, bx, by)
    wait_for_boxes(page, 1)
    page.keyboard.press("s")
    deadline = time.monotonic() + 30
    while store.version(big.id) == 0:
        assert time.monotonic() < deadline, f"the save did not reach the store (page: {caption(page)})"
        time.sleep(0.1)
    stored = store.boxes(big.id)
    assert len(stored) == 1 and stored.names == ["cow"]
    assert np.abs(stored.xyxy[0] - np.array(COW)).max() <= 2.0, stored.xyxy
    page.get_by_text(re.compile(r"^1 boxes · saved")).first.wait_for(timeout=30_000)
    assert view(page)[0] == 8  # the view stays where it was
    assert not page.locator('[data-testid="stException"]').count()


def test_a_suggested_image_opens_with_its_suggestions_and_a_accepts_them(served):
    page, store, _, small = served
    show(page, store, small)
    assert "**suggested**" not in caption(page)  # markdown is rendered: the state shows in bold
    assert "suggested by cow-ft (#3)" in caption(page)
    page.get_by_text("2 boxes (2 suggested, orange) · not saved yet").first.wait_for(timeout=30_000)
    assert box_count(page) == 2
    page.keyboard.press("a")
    deadline = time.monotonic() + 30
    while store.image_states([small.id])[small.id] != "labeled":
        assert time.monotonic() < deadline, f"A did not save (page: {caption(page)})"
        time.sleep(0.1)
    assert store.boxes(small.id).xyxy.tolist() == SUGGESTED and store.boxes(small.id).names == ["cow", "cow"]
    assert store.effort()[0]["unchanged"] == 2
    assert not page.locator('[data-testid="stException"]').count()
