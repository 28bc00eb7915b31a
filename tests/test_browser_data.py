"""Data page in chromium: upload images (one of them broken), then import a COCO file, first
without its images (refused with a message), then from server folders outside the import roots
(refused in the same words, whether the folder exists or not), then with its images as a zip."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from apprunner import CHROMIUM, CHROMIUM_ARGS, click, require_chromium, serve_app
from cowdetect.demo import demo_image
from cowdetect.images import encode_image
from cowdetect.import_roots import NOT_ALLOWED
from cowdetect.store import Store


def coco_with_images(tmp_path):
    """A COCO instances file for three demo images (boxes xywh px) and a zip of the images."""
    images, annotations, archive = [], [], io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for n in range(3):
            jpeg, truth = demo_image(11, "train", n, 320, 240)
            zipped.writestr(f"coco-{n}.jpg", jpeg)
            images.append({"id": 100 + n, "file_name": f"coco-{n}.jpg", "width": 320, "height": 240})
            for x1, y1, x2, y2 in truth.xyxy.tolist():
                annotations.append({"id": len(annotations) + 1, "image_id": 100 + n, "category_id": 21,
                                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 21, "name": "cow"}]}
    (tmp_path / "cows.json").write_text(json.dumps(coco))
    (tmp_path / "cows.zip").write_bytes(archive.getvalue())
    return tmp_path / "cows.json", tmp_path / "cows.zip", annotations


def test_upload_images_then_import_coco(tmp_path, monkeypatch):
    require_chromium()
    monkeypatch.setenv("COWDETECT_IMPORT_ROOTS", str(tmp_path / "allowed"))  # the app inherits it
    from playwright.sync_api import sync_playwright

    store = Store(tmp_path / "data")
    rng = np.random.default_rng(0)
    (tmp_path / "field.png").write_bytes(encode_image(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), "PNG"))
    (tmp_path / "barn.jpg").write_bytes(demo_image(11, "val", 0, 160, 120)[0])
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    coco_json, coco_zip, annotations = coco_with_images(tmp_path)
    with serve_app(store.data_dir) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto(url + "/data")
        page.get_by_text("No images yet").wait_for(timeout=60_000)

        panel = page.get_by_role("tabpanel").first
        click(page, panel.get_by_role("button", name="Add images"))
        page.get_by_text("Choose some images or zips first.").wait_for(timeout=30_000)
        panel.locator('input[type="file"]').set_input_files(
            [str(tmp_path / "field.png"), str(tmp_path / "barn.jpg"), str(tmp_path / "broken.jpg")])
        page.get_by_text("broken.jpg", exact=True).wait_for(timeout=30_000)  # listed by the uploader
        click(page, panel.get_by_role("button", name="Add images"))
        page.get_by_text("2 images added (0 boxes), 0 already stored, 1 skipped").wait_for(timeout=30_000)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)  # the skipped file and why
        assert store.count_images() == 2

        click(page, page.get_by_role("tab", name="Import COCO"))
        panel = page.get_by_role("tabpanel", name="Import COCO")
        inputs = panel.locator('input[type="file"]')
        inputs.nth(0).set_input_files(str(coco_json))
        page.get_by_text("cows.json", exact=True).wait_for(timeout=30_000)
        click(page, panel.get_by_role("button", name="Import COCO"))
        no_images = page.get_by_text("give the images: a zip of them, or their folder on this server")
        no_images.wait_for(timeout=30_000)
        folder = panel.get_by_label("…or the images folder on this server", exact=False)
        for where in (tmp_path / "no-such-folder", tmp_path):  # missing, and existing but outside
            folder.fill(str(where))
            click(page, panel.get_by_role("button", name="Import COCO"))
            page.get_by_text(NOT_ALLOWED).wait_for(timeout=30_000)
            no_images.wait_for(state="detached", timeout=30_000)
            folder.fill("")
            click(page, panel.get_by_role("button", name="Import COCO"))
            no_images.wait_for(timeout=30_000)
            page.get_by_text(NOT_ALLOWED).wait_for(state="detached", timeout=30_000)
        assert store.count_images() == 2  # nothing stored by the refused imports

        inputs.nth(1).set_input_files(str(coco_zip))
        page.get_by_text("cows.zip", exact=True).wait_for(timeout=30_000)
        click(page, panel.get_by_role("button", name="Import COCO"))
        with_cows = len({a["image_id"] for a in annotations})  # an image without a cow is not imported
        page.get_by_text(f"{with_cows} images added ({len(annotations)} boxes), 0 already stored").wait_for(
            timeout=30_000)
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()

    imported = [r for r in store.images() if r.original_name.startswith("coco-")]
    assert len(imported) == with_cows and all(r.labeled for r in imported)
    for record in imported:
        n = int(record.original_name.split("-")[1].split(".")[0])
        truth = demo_image(11, "train", n, 320, 240)[1]
        assert np.abs(store.boxes(record.id).xyxy - truth.xyxy).max() <= 0.01, record.original_name
