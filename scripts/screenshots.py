"""Make the README pictures: docs/demo-images.png, home.png, label.png, train.png, evaluate.png, track.png.

Usage: python scripts/screenshots.py --data-dir data   (a data folder with the demo in it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from apprunner import CHROMIUM_ARGS, serve_app  # noqa: E402
from cowdetect.demo import demo_image  # noqa: E402
from cowdetect.draw import draw_detections  # noqa: E402
from cowdetect.images import load_image  # noqa: E402


def demo_grid(path: Path, columns: int = 4, rows: int = 2) -> None:
    tiles = []
    for index in range(columns * rows):
        data, boxes = demo_image(0, "train", index)
        tiles.append(draw_detections(load_image(data), boxes, color=(255, 214, 0), show_scores=False))
    h, w = tiles[0].shape[:2]
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        grid[(i // columns) * h:(i // columns + 1) * h, (i % columns) * w:(i % columns + 1) * w] = tile
    Image.fromarray(grid).resize((columns * w // 2, rows * h // 2), Image.LANCZOS).save(path)


def pages(data_dir: Path) -> None:
    """docs/home.png and, when the folder has a finished training run, docs/train.png."""
    from playwright.sync_api import sync_playwright

    with serve_app(data_dir) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        page.get_by_text("Labeled images", exact=True).wait_for(timeout=60_000)
        page.locator('[data-testid="stImage"] img').last.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ROOT / "docs" / "home.png"), full_page=True)
        label(page, url)
        page.set_viewport_size({"width": 1300, "height": 2300})  # the page scrolls inside; show it all
        page.goto(url + "/train")
        moo = page.get_by_text("Moo! mAP50").first
        try:
            moo.wait_for(timeout=30_000)
        except Exception:  # no finished run in this folder
            browser.close()
            return
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ROOT / "docs" / "train.png"), full_page=True)
        evaluate(page, url)
        track(page, url)
        browser.close()


def evaluate(page, url: str) -> None:
    """docs/evaluate.png: pretrained vs the newest version on the test split (evaluations already stored)."""
    page.set_viewport_size({"width": 1300, "height": 1900})
    page.goto(url + "/evaluate")
    page.get_by_text("Per image, worst first").wait_for(timeout=60_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(ROOT / "docs" / "evaluate.png"), full_page=True)


def label(page, url: str) -> None:
    """docs/label.png: the Label page on the first image, with suggestions loaded."""
    page.set_viewport_size({"width": 1300, "height": 1100})
    page.goto(url + "/label")
    page.locator("canvas.upper-canvas >> visible=true").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Next ▶").click()
    page.wait_for_timeout(2000)
    page.get_by_role("button", name="Suggest boxes").click()
    page.get_by_text("boxes ·").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2500)
    page.screenshot(path=str(ROOT / "docs" / "label.png"), full_page=True)
    page.set_viewport_size({"width": 1300, "height": 1000})


def track(page, url: str) -> None:
    """docs/track.png: the demo video's newest tracking run and the two-model comparison."""
    page.set_viewport_size({"width": 1300, "height": 2000})
    page.goto(url + "/track")
    page.get_by_text("Video", exact=True).first.wait_for(timeout=60_000)
    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="demo-cows.mp4").first.click()
    page.get_by_text("Compare two models on this video").wait_for(timeout=30_000)
    page.locator("video").first.evaluate("v => { v.currentTime = 6.0; }")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(ROOT / "docs" / "track.png"), full_page=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    (ROOT / "docs").mkdir(exist_ok=True)
    demo_grid(ROOT / "docs" / "demo-images.png")
    pages(args.data_dir)
    print("wrote docs/demo-images.png, docs/home.png and (with finished runs) docs/train.png, docs/track.png")
