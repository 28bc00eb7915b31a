"""Make the README pictures: docs/demo-images.png and docs/home.png.

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


def home(path: Path, data_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    with serve_app(data_dir) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        page.get_by_text("Labeled images", exact=True).wait_for(timeout=60_000)
        page.locator('[data-testid="stImage"] img').last.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(path), full_page=True)
        browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    (ROOT / "docs").mkdir(exist_ok=True)
    demo_grid(ROOT / "docs" / "demo-images.png")
    home(ROOT / "docs" / "home.png", args.data_dir)
    print("wrote docs/demo-images.png and docs/home.png")
