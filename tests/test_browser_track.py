"""Track page in chromium: upload a video, track it in the background, and see the result play; a video
over the upload limit is refused. One app (upload limit 1 MB) serves both."""

from __future__ import annotations

import re

import numpy as np
import pytest

from apprunner import CHROMIUM, CHROMIUM_ARGS, click, require_chromium, serve_app, settle
from conftest import add_tiny_model
from cowdetect.demo import render_video
from cowdetect.store import Store
from cowdetect.video import write_video

LIMIT_MB = 1


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, store): the app on a data folder with a tiny model, uploads limited to 1 MB."""
    require_chromium()
    store = Store(tmp_path_factory.mktemp("browser-track") / "data")
    add_tiny_model(store)
    with serve_app(store.data_dir, options=("--server.maxUploadSize", str(LIMIT_MB))) as url:
        yield url, store


def test_upload_track_and_play(tmp_path, browser, served):
    url, store = served
    video = tmp_path / "cows.mp4"
    write_video((frame for frame, _ in render_video(3, 320, 180, 10, 2.0)), video, fps=10)
    assert video.stat().st_size < LIMIT_MB * 1024 * 1024  # under the shared app's upload limit
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url + "/track")
    page.get_by_text("No video yet").wait_for(timeout=60_000)
    page.locator('input[type="file"]').first.set_input_files(str(video))
    page.get_by_text("Added cows.mp4.").wait_for(timeout=60_000)
    assert [v.original_name for v in store.videos()] == ["cows.mp4"]
    # a counting line dragged with the mouse on the first frame (320x180 shown 2.25x: 720x405 canvas px),
    # bottom to top: kept with the video in frame pixels, and counted by the run
    click(page, page.get_by_text("Counting lines and zones").first)
    surface = page.locator("canvas.upper-canvas >> visible=true").first
    surface.wait_for(timeout=30_000)
    settle(page)  # a drag on a canvas a still-running rerun replaces is lost
    box = surface.bounding_box()
    page.mouse.move(box["x"] + 360, box["y"] + 396)
    page.mouse.down()
    page.mouse.move(box["x"] + 360, box["y"] + 200, steps=5)
    page.mouse.move(box["x"] + 360, box["y"] + 9, steps=5)
    page.mouse.up()
    click(page, page.get_by_role("button", name="Add this line"))
    page.get_by_text("Added line line1").wait_for(timeout=30_000)
    ((x1, y1), (x2, y2)) = store.videos()[0].geometry["lines"][0]["points"]
    assert (x1, y1, x2, y2) == pytest.approx((160, 176, 160, 4), abs=1.5)
    click(page, page.get_by_role("button", name="Track", exact=True))
    player = page.locator("video").first
    player.wait_for(timeout=180_000)
    run = store.runs("track")[0]
    assert run.status == "done" and run.iteration == 20
    page.wait_for_function("() => { const v = document.querySelector('video');"
                           " return v && v.readyState >= 2 && v.duration > 0 && !v.error; }", timeout=30_000)
    assert player.evaluate("async v => { v.muted = true; await v.play(); return !v.paused; }")
    # playing: the clock moves (waited for, not slept)
    page.wait_for_function("() => document.querySelector('video').currentTime > 0", timeout=30_000)
    state = player.evaluate("v => ({t: v.currentTime, d: v.duration, e: v.error && v.error.code, "
                            "w: v.videoWidth, h: v.videoHeight})")
    assert state["e"] is None and state["d"] == pytest.approx(2.0, abs=0.2), state
    assert state["t"] > 0 and (state["w"], state["h"]) == (320, 180), state
    assert page.get_by_text("Unique cows").count() and not page.locator('[data-testid="stException"]').count()
    page.get_by_text("line1 forward").first.wait_for(timeout=30_000)  # the counts, under the results
    assert run.metrics["counts"]["lines"][0]["name"] == "line1"
    page.close()


def test_upload_over_the_size_limit_is_refused(tmp_path, browser, served):
    url, store = served
    big = tmp_path / "big.mp4"
    rng = np.random.default_rng(0)
    write_video((rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(40)), big, fps=10, crf=0,
                preset="ultrafast")
    assert big.stat().st_size > 1.2 * LIMIT_MB * 1024 * 1024
    before = [v.id for v in store.videos()]
    page = browser.new_page()
    page.goto(url + "/track")
    page.get_by_text("Upload a video").first.wait_for(timeout=60_000)
    uploader = page.get_by_text("Video of cows").first
    if before:  # with videos stored, the upload expander starts closed: open it, as a person would
        click(page, page.get_by_text("Upload a video").first)
    uploader.wait_for(timeout=30_000)
    page.locator('input[type="file"]').first.set_input_files(str(big))
    page.get_by_text(re.compile(rf"must be {LIMIT_MB}(\.0)?\s?MB or smaller", re.I)).first.wait_for(timeout=30_000)
    assert [v.id for v in store.videos()] == before and "big.mp4" not in [v.original_name for v in store.videos()]
    assert not page.locator('[data-testid="stException"]').count()
    page.close()
