"""ui.LabelEditor, the Label page's edit state, on a real Store (no Streamlit run): loading,
dirty checks, suggestions, saving (once per click, stale versions), navigation."""

from __future__ import annotations

import numpy as np
import pytest

from cowdetect.detections import Detections
from cowdetect.images import encode_image
from cowdetect.store import Store
from ui.editor import LabelEditor, box_iou, same_boxes, stored_boxes


def cow(x1: float, y1: float, x2: float, y2: float, label: str = "cow", suggested: bool = False) -> dict:
    return {"label": label, "xyxy": [x1, y1, x2, y2], "suggested": suggested}


@pytest.fixture
def images(store: Store) -> Store:
    """Four 64x48 images: 1 train, 2 train, 3 val, 4 train; image 2 labeled with one cow."""
    rng = np.random.default_rng(0)
    for i, split in enumerate(("train", "train", "val", "train")):
        boxes = Detections.from_names([[4, 4, 20, 20]], ["cow"], store.class_names()) if i == 1 else None
        store.add_image(encode_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "PNG"), f"{i}.png",
                        split=split, boxes=boxes)
    return store


def opened(store: Store, split: str | None = None, image_id: int | None = None) -> LabelEditor:
    editor = LabelEditor(store)
    editor.image_id = image_id
    assert editor.open(split)
    return editor


@pytest.mark.parametrize("a, b, iou", [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
    ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # empty boxes: no division by zero
])
def test_box_iou(a, b, iou):
    assert box_iou(a, b) == pytest.approx(iou)


@pytest.mark.parametrize("a, b, same", [
    ([cow(1, 2, 3, 4)], [cow(1, 2, 3, 4, suggested=True)], True),  # suggested or not: the same boxes
    ([cow(1, 2, 3, 4)], [cow(1, 2, 3, 5)], False),
    ([cow(1, 2, 3, 4)], [cow(1, 2, 3, 4, label="sheep")], False),
    ([cow(1, 2, 3, 4), cow(5, 6, 7, 8)], [cow(5, 6, 7, 8), cow(1, 2, 3, 4)], False),  # order counts
    ([], [], True),
])
def test_same_boxes(a, b, same):
    assert same_boxes(a, b) is same


def test_open_an_empty_store_or_split(store, images):
    assert LabelEditor(Store(store.data_dir.parent / "empty")).open(None) is False
    assert LabelEditor(images).open("test") is False
    assert LabelEditor(images).open("unassigned") is False


@pytest.mark.parametrize("split, wanted, shown, position, total", [
    (None, None, 1, 0, 4),      # nothing asked: the first image
    (None, 3, 3, 2, 4),
    ("val", None, 3, 0, 1),
    ("val", 2, 3, 0, 1),        # image 2 is not in val: the split's first image instead
    ("train", 4, 4, 2, 3),
    (None, 99, 1, 0, 4),        # deleted (or never stored): the first image
])
def test_open_picks_the_image_to_show(images, split, wanted, shown, position, total):
    editor = opened(images, split, wanted)
    assert (editor.image_id, editor.record.id, editor.position, editor.total) == (shown, shown, position, total)
    assert editor.loaded_id == shown and editor.news is None


def test_load_reads_the_store_under_a_new_canvas_key(images):
    editor = opened(images, image_id=2)
    assert editor.boxes == editor.saved == [cow(4.0, 4.0, 20.0, 20.0)] and editor.version == images.version(2) == 0
    first_key = editor.canvas_key
    editor.boxes, editor.dirty = [], True
    editor.load()  # Revert
    assert editor.boxes == [cow(4.0, 4.0, 20.0, 20.0)] and not editor.dirty
    assert editor.canvas_key != first_key and editor.canvas_key.startswith("canvas-2-")


def test_update_sets_dirty(images):
    editor = opened(images, image_id=2)
    assert editor.update(None) == editor.boxes and not editor.dirty  # the canvas has not reported yet
    assert editor.update([cow(4.0, 4.0, 20.0, 20.0)]) and not editor.dirty
    editor.update([cow(4.0, 4.0, 20.0, 21.0)])
    assert editor.dirty
    editor.update([])
    assert editor.dirty
    editor.update([cow(4.0, 4.0, 20.0, 20.0, suggested=True)])  # a suggestion is unsaved even where it matches
    assert editor.dirty


def test_suggest_adds_only_boxes_that_repeat_none(images):
    editor = opened(images, image_id=2)
    key = editor.canvas_key
    found = Detections.from_names([[4, 4, 20, 21], [30, 10, 50, 40], [31, 10, 50, 40]], ["cow"] * 3,
                                  images.class_names(), score=[0.9, 0.8, 0.7])
    assert editor.suggest(found, editor.update(None)) == 1  # the first repeats the stored box, the third the second
    assert editor.boxes == [cow(4.0, 4.0, 20.0, 20.0), cow(30.0, 10.0, 50.0, 40.0, suggested=True)]
    assert editor.canvas_key != key  # the canvas redraws with them
    assert images.version(2) == 0 and len(images.boxes(2)) == 1  # nothing stored until Save
    assert editor.suggest(Detections.empty(images.class_names(), scored=True), editor.boxes) == 0


def test_save_stores_image_pixels_reloads_and_says_so(images):
    editor = opened(images, image_id=1)
    drawn = editor.update([cow(1.5, 2.25, 30.0, 40.0)])
    editor.save(drawn, 1, editor.version)
    assert images.boxes(1).xyxy.tolist() == [[1.5, 2.25, 30.0, 40.0]] and images.version(1) == 1
    assert images.image(1).labeled
    assert editor.take_flash() == [("success", "Saved 1 boxes on image 1.")] and editor.take_flash() == []
    key = editor.canvas_key
    assert editor.open(None) and editor.image_id == 1 and editor.news is None
    assert editor.boxes == stored_boxes(images, 1) and editor.version == 1 and editor.canvas_key != key
    assert editor.update(None) and not editor.dirty


def test_a_click_delivered_twice_saves_once(images):
    editor = opened(images, image_id=1)
    drawn = editor.update([cow(1.0, 2.0, 30.0, 40.0)])
    for _ in range(2):  # the same callback, with the same arguments from the run that drew it
        editor.save(drawn, 1, 0, then=3)
    assert images.version(1) == 1 and editor.image_id == 3
    assert [kind for kind, _ in editor.take_flash()] == ["success"]  # no "over another session" warning


def test_unknown_class_is_refused_and_nothing_moves(images):
    editor = opened(images, image_id=1)
    editor.save([cow(1.0, 2.0, 30.0, 40.0, label="sheep")], 1, 0, then=3)
    (kind, text), = editor.take_flash()
    assert kind == "error" and text.startswith("Unknown class ['sheep']: choose one of ['cow']")
    assert images.version(1) == 0 and not images.image(1).labeled and editor.image_id == 1


def test_two_sessions_reload_or_warn_and_the_later_save_wins(images):
    alice, bob = opened(images, image_id=2), opened(images, image_id=2)
    alice.save(alice.update([cow(1.0, 1.0, 9.0, 9.0)]), 2, alice.version)
    assert bob.open(None) and bob.news == "reloaded"  # bob had no unsaved edits: he sees alice's box
    assert bob.boxes == [cow(1.0, 1.0, 9.0, 9.0)] and bob.version == 1
    bob.update([cow(2.0, 2.0, 12.0, 12.0)])  # bob edits, unsaved
    assert alice.open(None) and alice.news is None
    alice.save(alice.update([cow(3.0, 3.0, 13.0, 13.0)]), 2, alice.version)
    assert bob.open(None) and bob.news == "stale"  # his edits are kept, and he is told
    assert bob.version == 1 and bob.boxes == [cow(1.0, 1.0, 9.0, 9.0)]
    bob.save([cow(2.0, 2.0, 12.0, 12.0)], 2, bob.version)
    assert images.boxes(2).xyxy.tolist() == [[2, 2, 12, 12]] and images.version(2) == 3
    assert [kind for kind, _ in bob.take_flash()] == ["success", "warning"]


def test_navigation_asks_before_leaving_unsaved_changes(images):
    editor = opened(images, image_id=1)
    assert editor.targets() == {"prev": 4, "next": 2, "unlabeled": 3}  # wraps around; image 2 is labeled
    editor.move(2, dirty=True)
    assert editor.pending == 2 and editor.image_id == 1
    editor.stay()
    assert editor.pending is None and editor.image_id == 1
    editor.move(2, dirty=True)
    editor.save([cow(1.0, 2.0, 30.0, 40.0)], 1, 0, then=editor.pending)  # Save and go
    assert editor.image_id == 2 and editor.pending is None and images.version(1) == 1
    editor.move(4, dirty=True)
    editor.move(editor.pending, dirty=False)  # Discard and go
    assert editor.image_id == 4 and editor.pending is None
    assert editor.open("train") and editor.targets() == {"prev": 2, "next": 1, "unlabeled": 4}


def test_next_unlabeled_when_all_are_labeled(images):
    editor = opened(images, "val")
    editor.save([cow(1.0, 2.0, 30.0, 40.0)], 3, 0)
    assert editor.take_flash()[0][0] == "success"
    assert editor.open("val") and editor.targets() == {"prev": 3, "next": 3, "unlabeled": None}
    editor.move(None, dirty=False)
    assert editor.take_flash() == [("success", "All 1 images here are labeled.")] and editor.image_id == 3
