"""The Data page through AppTest: empty guard, splits, paged browsing, export, Deep Lake offline."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import ui
from conftest import open_page
from cowdetect.images import encode_image
from cowdetect.import_roots import HOW_TO_ALLOW, NOT_ALLOWED


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
        store.add_image(encode_image(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8), "PNG"), name=f"{i}.png")
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
    store.add_image(encode_image(np.zeros((32, 32, 3), np.uint8), "PNG"))
    at = page(store, monkeypatch)
    button(at, "Import from Deep Lake").click().run()
    assert not at.exception and "cannot be opened" in at.error[0].value
    assert store.count_images() == 1


def test_move_one_page_to_a_split(store, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(30):
        store.add_image(encode_image(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8), "PNG"), name=f"{i}.png")
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


def test_server_folders_are_off_until_an_admin_lists_some(store, monkeypatch, tmp_path):
    monkeypatch.delenv("COWDETECT_IMPORT_ROOTS", raising=False)
    at = page(store, monkeypatch)
    assert HOW_TO_ALLOW in [c.value for c in at.caption]
    assert "coco_dir" not in [t.key for t in at.text_input]
    monkeypatch.setenv("COWDETECT_IMPORT_ROOTS", str(tmp_path / "coco"))
    at = page(store, monkeypatch)
    assert str(tmp_path / "coco") in at.text_input(key="coco_dir").label


@pytest.mark.parametrize("where", ["secret", "allowed/../secret", "allowed/out", "allowed/missing", "missing",
                                   "allowed/a.png", "allowed/../../../etc"])
def test_a_refused_server_folder_never_tells_whether_it_exists(tmp_path, monkeypatch, where):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "allowed" / "a.png").write_bytes(b"not a folder")
    (tmp_path / "allowed" / "out").symlink_to(tmp_path / "secret", target_is_directory=True)
    monkeypatch.setenv("COWDETECT_IMPORT_ROOTS", str(tmp_path / "allowed"))
    with pytest.raises(ValueError) as err:
        ui.coco_images(None, str(tmp_path / where))
    assert str(err.value) == NOT_ALLOWED
    assert ui.coco_images(None, str(tmp_path / "allowed"))[0].folder == (tmp_path / "allowed").resolve()


@pytest.mark.parametrize("source", ["/etc", "file:///etc", "s3://bucket/cows"])
def test_deep_lake_reads_no_server_folder_outside_the_roots(store, monkeypatch, tmp_path, source):
    monkeypatch.setenv("COWDETECT_IMPORT_ROOTS", str(tmp_path / "allowed"))
    at = page(store, monkeypatch)
    at.text_input(key="dl_source").input(source)
    button(at, "Import from Deep Lake").click().run()
    assert not at.exception and len(at.error) == 1
    s3 = "Deep Lake dataset: expected hub:// or al:// or a folder on the server, got a s3:// URL"
    assert at.error[0].value == (s3 if source.startswith("s3") else NOT_ALLOWED)
    assert store.count_images() == 0
