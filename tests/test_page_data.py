"""The Data page through AppTest: empty guard, splits, paged browsing, export, Deep Lake offline."""

from __future__ import annotations

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import open_page
from cowdetect.images import encode_image


def page(store, monkeypatch) -> AppTest:
    return open_page("data", store, monkeypatch)


def button(at, label):
    return next(b for b in at.button if b.label.startswith(label))


def test_no_images(store, monkeypatch):
    at = page(store, monkeypatch)
    assert "No images yet" in at.info[0].value


def test_split_browse_export(store, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(30):
        store.add_image(encode_image(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), "PNG"), name=f"{i}.png")
    at = page(store, monkeypatch)
    assert len(at.get("image")) == 24  # one page of thumbnails, not all 30
    assert "(of 2)" in at.number_input(key="browse_page").label
    button(at, "Split the 30 unassigned images").click().run()
    assert store.count_images("unassigned") == 0 and store.count_images("train") == 21
    assert "21 → train" in at.success[0].value
    at.number_input(key="browse_page").set_value(2).run()
    assert len(at.get("image")) == 6
    button(at, "Prepare COCO JSON").click().run()
    assert "Download COCO JSON (0 images, 0 boxes)" in at.get("download_button")[0].proto.label


def test_deeplake_offline_message(store, monkeypatch):
    store.add_image(encode_image(np.zeros((8, 8, 3), np.uint8), "PNG"))
    at = page(store, monkeypatch)
    button(at, "Import from Deep Lake").click().run()
    assert not at.exception and "cannot be opened" in at.error[0].value
    assert store.count_images() == 1


def test_move_one_page_to_a_split(store, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(30):
        store.add_image(encode_image(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), "PNG"), name=f"{i}.png")
    at = page(store, monkeypatch)
    at.selectbox(key="browse_move").select("val").run()
    button(at, "Move 24 images to val").click().run()
    assert store.count_images("val") == 24 and store.count_images("unassigned") == 6
    assert at.selectbox(key="browse_move").value == "—"  # one move per choice: no second page moved by accident
    assert not [b for b in at.button if b.label.startswith("Move ")]


def test_forms_sent_without_files_say_so(store, monkeypatch):
    at = page(store, monkeypatch)
    button(at, "Add images").click().run()
    assert "Choose some images or zips first." in at.warning[0].value
    button(at, "Import COCO").click().run()
    assert "choose the COCO instances JSON file first" in at.error[0].value and store.count_images() == 0
