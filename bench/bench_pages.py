"""Label and Data pages with 100 and with 10,000 images: time per page run (AppTest), and the ratio.

Both data folders are built first (small random 64x48 images, half of them labeled with one
box); then the runs are interleaved, a warm-up each, and the medians compared. The Label
page opens an image in the middle of the list and steps to the next one; the Data page
shows a page of thumbnails from the middle. A second pair of folders has one image in ten
labeled and the other nine "suggested" (a pre-label job's output: a suggestion set of three
scored boxes and an uncertainty each), for the Label page again ("label, 90% suggested").
Goal: 10,000 images no slower than 1.5x 100.
Usage: python bench/bench_pages.py [--repeats N] [--large 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect.detections import Detections  # noqa: E402
from cowdetect.images import encode_image  # noqa: E402
from cowdetect.store import Store  # noqa: E402


SUGGESTED = [[2, 2, 20, 20], [24, 10, 50, 40], [40, 20, 62, 46]]


def build(folder: Path, n: int, suggested: bool = False) -> Store:
    """``n`` images, half labeled; with ``suggested`` one in ten labeled, the others suggested."""
    store = Store(folder)
    rng = np.random.default_rng(n)
    vocab = store.class_names()
    for i in range(n):
        rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        labeled = i % 10 == 0 if suggested else i % 2 == 1
        boxes = Detections.from_names([[4, 4, 30, 30]], ["cow"], vocab) if labeled else None
        record, _ = store.add_image(encode_image(rgb, "PNG"), name=f"img-{i:05d}.png",
                                    split=("train", "val", "test")[i % 3], boxes=boxes)
        if suggested and not labeled:
            scores = rng.uniform(0.3, 0.99, len(SUGGESTED)).astype(np.float32)
            store.set_suggestions(record.id, Detections.from_names(SUGGESTED, ["cow"] * len(SUGGESTED), vocab,
                                                                   score=scores),
                                  "bench model", score_threshold=0.3, uncertainty=float(rng.uniform(0, 3)))
    return store


def page_run(store: Store, page: str) -> float:
    """Seconds for one fresh session's first run of a page plus one interaction."""
    from streamlit.testing.v1 import AppTest

    os.environ["COWDETECT_DATA_DIR"] = str(store.data_dir)
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{page}.py"), default_timeout=120)
    middle = store.images_page(store.count_images() // 2, 1)[0].id
    started = time.perf_counter()
    if page == "label":
        import ui
        editor = ui.LabelEditor(store)
        editor.image_id = middle
        at.session_state["label_editor"] = editor
        at.run()
        next(b for b in at.button if b.label == "Next ▶").click().run()
    else:
        at.run()
        pages = -(-store.count_images() // 24)
        at.number_input(key="browse_page").set_value(pages // 2 + 1).run()
    elapsed = time.perf_counter() - started
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sizes = (args.small, args.large)
        plain = {n: build(Path(tmp) / str(n), n) for n in sizes}
        suggested = {n: build(Path(tmp) / f"{n}-suggested", n, suggested=True) for n in sizes}
        print(f"built data folders of {args.small} and {args.large} images (twice: half labeled; 90% suggested) "
              f"in {time.perf_counter() - t0:.0f} s")
        print(f"{'page':<22} {args.small:>8} img, s {args.large:>8} img, s {'ratio':>6}")
        for row, page, stores in (("label", "label", plain), ("data", "data", plain),
                                  ("label, 90% suggested", "label", suggested)):
            times: dict[int, list[float]] = {n: [] for n in stores}
            for n, store in stores.items():
                page_run(store, page)  # warm-up: imports, caches
            for _ in range(args.repeats):
                for n, store in stores.items():
                    times[n].append(page_run(store, page))
            small, large = (statistics.median(times[n]) for n in sizes)
            print(f"{row:<22} {small:>14.3f} {large:>14.3f} {large / small:>6.2f}")


if __name__ == "__main__":
    main()
