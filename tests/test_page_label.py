"""The Label page through AppTest. The canvas is a browser component: here its value is injected
through session state, the way the component reports it (boxes in canvas pixels plus the
background fit); test_browser_label.py draws with a real mouse."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import add_tiny_model, open_page
from cowdetect.detections import Detections
from cowdetect.images import encode_image
from cowdetect.store import Store


def page(store, monkeypatch) -> AppTest:
    return open_page("label", store, monkeypatch)


def draw(at: AppTest, image_id: int, canvas_boxes: list[tuple[float, float, float, float]], scale: float,
         natural: tuple[int, int], label: str = "cow") -> None:
    """What the canvas sends after the user drew ``canvas_boxes`` (left, top, width, height in canvas px)."""
    editor = at.session_state["label_editor"]
    assert editor.loaded_id == image_id
    objects = [{"type": "LabeledRect", "label": label, "left": x, "top": y, "width": w, "height": h,
                "originX": "left", "originY": "top", "scaleX": 1, "scaleY": 1, "stroke": "#00e5ff"}
               for x, y, w, h in canvas_boxes]
    at.session_state[editor.canvas_key] = {
        "drawing": {"raw": {"objects": objects}, "data": None},
        "backgroundFit": {"naturalWidth": natural[0], "naturalHeight": natural[1], "scaleX": scale, "scaleY": scale,
                          "offsetX": 0, "offsetY": 0}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def two_sizes(tmp_path) -> Store:
    """One image larger than the canvas (1600x1200, shown at 0.45x) and one smaller (120x90, shown at 6x)."""
    store = Store(tmp_path / "data")
    rng = np.random.default_rng(0)
    for w, h in ((1600, 1200), (120, 90)):
        store.add_image(encode_image(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "PNG"), name=f"{w}.png")
    return store


def test_no_images(store, monkeypatch):
    at = page(store, monkeypatch)
    assert "No images yet" in at.info[0].value


def test_boxes_are_stored_in_image_pixels_whatever_the_display_size(two_sizes, monkeypatch):
    at = page(two_sizes, monkeypatch)
    assert "Image 1 of 2 · **0 of 2 labeled**" in at.caption[0].value
    draw(at, 1, [(90, 45, 180, 135)], scale=0.45, natural=(1600, 1200))
    assert "unsaved changes" in at.caption[1].value
    click(at, "Save")
    assert two_sizes.boxes(1).xyxy.tolist() == [[200, 100, 600, 400]]
    assert two_sizes.version(1) == 1
    click(at, "Next ▶")
    assert "Image 2 of 2 · **1 of 2 labeled**" in at.caption[0].value
    draw(at, 2, [(60, 30, 240, 300)], scale=6.0, natural=(120, 90))
    click(at, "Save")
    assert two_sizes.boxes(2).xyxy.tolist() == [[10, 5, 50, 55]]
    # a box dragged past the image edge is clipped to it
    draw(at, 2, [(600, 480, 300, 300)], scale=6.0, natural=(120, 90))
    click(at, "Save")
    assert two_sizes.boxes(2).xyxy.tolist() == [[100, 80, 120, 90]]


def test_unsaved_changes_are_not_lost_on_navigation(two_sizes, monkeypatch):
    at = page(two_sizes, monkeypatch)
    draw(at, 1, [(90, 45, 180, 135)], scale=0.45, natural=(1600, 1200))
    click(at, "Next ▶")
    assert "unsaved changes" in at.warning[0].value and "Image 1 of 2" in at.caption[0].value
    click(at, "Stay")
    assert "Image 1 of 2" in at.caption[0].value
    click(at, "Next ▶")
    click(at, "Save and go")
    assert "Image 2 of 2" in at.caption[0].value and len(two_sizes.boxes(1)) == 1
    click(at, "Next unlabeled")  # image 2 is the only unlabeled one: it stays
    assert "Image 2 of 2" in at.caption[0].value


def test_stale_view_across_two_sessions(two_sizes, monkeypatch):
    alice, bob = page(two_sizes, monkeypatch), page(two_sizes, monkeypatch)
    draw(alice, 1, [(90, 45, 180, 135)], scale=0.45, natural=(1600, 1200))
    click(alice, "Save")
    bob.run()  # bob had no unsaved edits: his view reloads with alice's box and he is told
    assert "another session saved it" in bob.info[0].value and "1 boxes" in bob.caption[1].value
    draw(alice, 1, [(0, 0, 45, 45)], scale=0.45, natural=(1600, 1200))  # alice edits, unsaved
    two_sizes.set_boxes(1, Detections.from_names([[1, 1, 9, 9]], ["cow"], two_sizes.class_names()))  # someone saves
    alice.run()
    assert "your view is stale" in alice.warning[0].value
    click(alice, "Save")  # the later save wins, and alice is told it replaced the other save
    assert two_sizes.boxes(1).xyxy.tolist() == [[0, 0, 100, 100]]
    assert any("over boxes another session had saved" in w.value for w in alice.warning)
    assert any("Saved 1 boxes" in m.value for m in alice.success)


def test_suggestions_are_editable_until_saved(demo_store_copy, monkeypatch):
    add_tiny_model(demo_store_copy)  # the active model: an untrained tiny detector, so suggestions are arbitrary
    at = page(demo_store_copy, monkeypatch)
    at.slider(key="label_threshold").set_value(0.05).run()
    image_id = demo_store_copy.images()[0].id
    before = demo_store_copy.boxes(image_id).xyxy.tolist()
    click(at, "Suggest boxes")
    boxes = at.session_state["label_editor"].boxes
    suggested = sum(b["suggested"] for b in boxes)
    assert suggested > 0 and f"({suggested} suggested, orange)" in at.caption[1].value
    assert demo_store_copy.boxes(image_id).xyxy.tolist() == before  # nothing stored until Save
    click(at, "Save")
    assert len(demo_store_copy.boxes(image_id)) == len(before) + suggested
    assert "suggested" not in at.caption[1].value and "· saved" in at.caption[1].value


@pytest.fixture
def demo_store_copy(tmp_path) -> Store:
    from cowdetect.demo import make_demo
    store = Store(tmp_path / "data")
    make_demo(store, n_train=2, n_val=0, n_test=0, size=(128, 96), video=False)
    return store


def test_a_box_with_an_unknown_class_is_refused_and_nothing_changes(two_sizes, monkeypatch):
    at = page(two_sizes, monkeypatch)
    draw(at, 1, [(90, 45, 180, 135)], scale=0.45, natural=(1600, 1200), label="sheep")
    click(at, "Save")
    assert "Unknown class ['sheep']" in at.error[0].value
    assert two_sizes.version(1) == 0 and len(two_sizes.boxes(1)) == 0 and not two_sizes.image(1).labeled


@pytest.fixture
def suggested(tmp_path) -> Store:
    """Three 64x48 images: 1 with a stored suggestion set, 2 a frame of a stored video, 3 plain."""
    store = Store(tmp_path / "data")
    video, _ = store.add_video(b"not decoded here", "cows.mp4", 64, 48, 25.0, 100)
    rng = np.random.default_rng(0)
    for i in range(3):
        store.add_image(encode_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "PNG"), name=f"{i}.png",
                        frame=(video.id, 7, 0.28) if i == 1 else None)
    store.set_suggestions(1, Detections.from_names([[4, 4, 20, 30], [30, 10, 60, 40]], ["cow"] * 2,
                                                   store.class_names(), score=[0.9, 0.6]), "cow-ft (#3)")
    return store


def test_a_suggested_image_opens_with_its_suggestions_and_accept_all_saves_them(suggested, monkeypatch):
    at = page(suggested, monkeypatch)
    assert "**0 of 3 labeled**, 1 suggested, 2 unlabeled" in at.caption[0].value
    assert "**suggested** by cow-ft (#3)" in at.caption[0].value and "video" not in at.caption[0].value
    assert "2 boxes (2 suggested, orange) · not saved yet" in at.caption[1].value
    click(at, "Accept all")  # every box as ground truth, then the next image to label
    assert suggested.boxes(1).xyxy.tolist() == [[4, 4, 20, 30], [30, 10, 60, 40]]
    assert suggested.image_states([1, 2, 3]) == {1: "labeled", 2: "unlabeled", 3: "unlabeled"}
    assert suggested.effort()[0]["unchanged"] == 2 and suggested.effort()[0]["source"] == "cow-ft (#3)"
    caption = at.caption[0].value
    assert caption.startswith("Image 2 of 3 · **1 of 3 labeled**, 0 suggested, 2 unlabeled")
    assert "**unlabeled** · video 1, frame 7 at 0.28 s" in caption and "0 boxes · saved" in at.caption[1].value
    click(at, "◀ Previous")
    assert at.caption[0].value.endswith("· **labeled**") and "2 boxes · saved" in at.caption[1].value


def test_boxes_drawn_zoomed_in_are_stored_in_original_pixels(two_sizes, monkeypatch):
    at = page(two_sizes, monkeypatch)
    draw(at, 1, [(0, 0, 45, 45)], scale=0.45, natural=(1600, 1200))  # [0, 0, 100, 100] at fit
    click(at, "Save")
    click(at, "Zoom in")
    click(at, "Zoom in")  # 4x: 1.8 canvas px per image px, the view x 600-1000, y 450-750
    assert "zoom 4× · x 600–1000, y 450–750 px" in at.caption[2].value
    assert at.session_state["label_editor"].view.scale == pytest.approx(1.8)
    draw(at, 1, [(18, 27, 72, 45)], scale=1.0, natural=(720, 540))  # the saved box is out of view
    click(at, "Save")
    assert two_sizes.boxes(1).xyxy.tolist() == [[0, 0, 100, 100], [610, 465, 650, 490]]
    click(at, "▶")  # pan half a view right: the box drawn is still there, the canvas redrawn with it
    assert "x 800–1200" in at.caption[2].value and "2 boxes · saved" in at.caption[1].value
    click(at, "Fit")
    assert "zoom 1×" in at.caption[2].value and "2 boxes · saved" in at.caption[1].value
