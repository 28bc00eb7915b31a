"""ui.LabelEditor, the Label page's edit state, on a real Store (no Streamlit run): loading,
dirty checks, suggestions (stored ones on open, the model's), saving (once per click, stale
versions), navigation; the canvas's zoom and pan (ui.zoom.Viewport, ui.canvas conversions)."""

from __future__ import annotations

import numpy as np
import pytest

from cowdetect.detections import Detections
from cowdetect.images import encode_image
from cowdetect.store import Store
from ui.canvas import SUGGESTED_COLOR, boxes_to_objects, canvas_boxes
from ui.editor import LabelEditor, box_iou, same_boxes, stored_boxes, with_hidden
from ui.zoom import Viewport, overview, view_image


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
    # the first repeats the stored box, the third the second
    assert editor.suggest(found, editor.update(None), "tiny (#1)", 0.5) == 1
    assert editor.boxes == [cow(4.0, 4.0, 20.0, 20.0), cow(30.0, 10.0, 50.0, 40.0, suggested=True)]
    assert editor.canvas_key != key  # the canvas redraws with them
    assert images.version(2) == 0 and len(images.boxes(2)) == 1  # no ground truth stored until Save
    stored = images.suggestions(2)  # but the suggestion set is, all three, so Save measures the effort
    assert stored.source == "tiny (#1)" and len(stored.boxes) == 3 and stored.score_threshold == 0.5
    assert editor.update(None) and editor.dirty  # a labeled image with suggestions on it
    assert editor.suggest(Detections.empty(images.class_names(), scored=True), editor.boxes, "tiny (#1)") == 0
    assert images.suggestions(2).source == "tiny (#1)" and len(images.suggestions(2).boxes) == 0
    past_the_edge = Detections.from_names([[-2.1, 30, 20, 50.5], [63.5, 0, 70, 9]], ["cow"] * 2, images.class_names(),
                                          score=[0.9, 0.8])  # 64x48: the second is left with 0.5 px
    assert editor.suggest(past_the_edge, [], "ssd") == 1
    assert editor.boxes == [cow(0.0, 30.0, 20.0, 48.0, suggested=True)]
    assert images.suggestions(2).boxes.xyxy.tolist() == [[0, 30, 20, 48]]


def test_an_unlabeled_image_opens_with_its_stored_suggestions(images):
    found = Detections.from_names([[30, 10, 50, 40], [1, 1, 10, 10]], ["cow"] * 2, images.class_names(),
                                  score=[0.9, 0.4])
    images.set_suggestions(1, found, "cow-ft (#3)")
    images.set_suggestions(2, found, "cow-ft (#3)")  # labeled: its ground truth wins
    editor = opened(images, image_id=1)
    assert editor.state == "suggested" and editor.suggestions.source == "cow-ft (#3)"
    assert editor.boxes == [cow(30.0, 10.0, 50.0, 40.0, suggested=True), cow(1.0, 1.0, 10.0, 10.0, suggested=True)]
    assert editor.update(None) and not editor.dirty  # untouched: leaving loses nothing, they stay stored
    editor.update([cow(30.0, 10.0, 50.0, 40.0, suggested=True)])
    assert editor.dirty  # one deleted
    target = editor.targets("id")["unlabeled"]
    assert target == 3
    editor.save(editor.boxes, 1, 0, then=target)  # Accept all: every box as ground truth, then the next
    assert images.boxes(1).xyxy.tolist() == [[30, 10, 50, 40], [1, 1, 10, 10]] and editor.image_id == 3
    assert images.image_states([1, 2, 3]) == {1: "labeled", 2: "labeled", 3: "unlabeled"}
    assert images.effort()[0]["unchanged"] == 2
    editor.open(None)
    assert editor.state == "unlabeled" and opened(images, image_id=2).state == "labeled"
    assert opened(images, image_id=2).boxes == [cow(4.0, 4.0, 20.0, 20.0)]


def test_suggestions_arriving_while_the_image_is_open_reload_it_or_flag_it_stale(images):
    """A pre-label job stores suggestions for the image being shown: an untouched view shows them
    (never 'dirty' with boxes it does not draw); a view with unsaved boxes is told it is stale."""
    found = Detections.from_names([[30, 10, 50, 40]], ["cow"], images.class_names(), score=[0.9])
    editor = opened(images, image_id=1)
    assert editor.boxes == [] and not editor.update(None) and not editor.dirty
    images.set_suggestions(1, found, "cow-ft (#3)")
    editor.open(None)
    assert editor.news == "reloaded" and editor.boxes == [cow(30.0, 10.0, 50.0, 40.0, suggested=True)]
    assert not editor.dirty
    editor.update([cow(30.0, 10.0, 50.0, 40.0, suggested=True), cow(1.0, 1.0, 9.0, 9.0)])  # drew one
    images.set_suggestions(1, found[:0], "other (#4)")
    editor.open(None)
    assert editor.news == "stale" and len(editor.boxes) == 1  # the drawing stays; the canvas is not redrawn


def test_next_unlabeled_follows_the_order_asked(images):
    images.set_suggestions(4, Detections.empty(images.class_names(), scored=True), "m", uncertainty=0.9)
    images.set_suggestions(3, Detections.empty(images.class_names(), scored=True), "m", uncertainty=0.2)
    editor = opened(images, image_id=1)
    assert editor.targets("uncertainty")["unlabeled"] == 4 and editor.targets("id")["unlabeled"] == 3
    assert opened(images, image_id=4).targets("uncertainty")["unlabeled"] == 3  # never the image shown


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


# --- zoom and pan: a 3840x2160 frame on a 720x405 canvas (fit 0.1875) ---

FRAME = Viewport.fitting(3840, 2160)


def test_viewport_fits_then_zooms_pans_and_stays_inside_the_image():
    assert (FRAME.canvas_w, FRAME.canvas_h, FRAME.fit, FRAME.box) == (720, 405, 0.1875, (0, 0, 3840, 2160))
    assert FRAME.moved("out") == FRAME and FRAME.moved("fit") == FRAME
    eight = FRAME.moved("in").moved("in").moved("in")
    assert eight.zoom == 8 and eight.scale == 1.5 and eight.box == (1680, 945, 2160, 1215)  # about the centre
    assert eight.moved((1, 0)).box == (1920, 945, 2400, 1215)  # half a view
    corner = eight.centered(0, 99_999)
    assert corner.box == (0, 1890, 480, 2160)  # clamped to the image
    assert corner.moved((-1, 1)) == corner
    assert eight.moved("fit") == FRAME and FRAME.moved("in").moved("in").moved("in").moved("out").zoom == 4
    assert eight.for_image(3840, 2160) is eight and eight.for_image(640, 480) == Viewport.fitting(640, 480)
    assert "zoom 8× · x 1680–2160, y 945–1215 px" == eight.describe()
    with pytest.raises(ValueError, match="zoom: expected one of"):
        FRAME.centered(0, 0, 3)
    with pytest.raises(ValueError, match="width, height"):
        Viewport.fitting(0, 10)


@pytest.mark.parametrize("view", [FRAME, FRAME.moved("in"), FRAME.centered(2700, 1500, 8), FRAME.centered(9, 9, 16),
                                  Viewport.fitting(120, 90), Viewport.fitting(1600, 1200).centered(333, 777, 4)])
def test_original_to_canvas_to_original_round_trips(view):
    x0, y0, x1, y1 = view.box
    box = [round(x0 + (x1 - x0) * 0.31, 2), round(y0 + (y1 - y0) * 0.27, 2),
           round(x0 + (x1 - x0) * 0.58, 2), round(y0 + (y1 - y0) * 0.71, 2)]
    assert view.shows(box) and view.to_image(view.to_canvas(box)) == box


class Reported:
    """What st_canvas returns, for ui.canvas.canvas_boxes: its objects and their boxes in canvas px."""

    def __init__(self, objects: list[dict]) -> None:
        self.json_data = {"objects": objects}
        self.boxes = [{k: o[k] for k in ("label", "left", "top", "width", "height")} for o in objects]


def test_boxes_out_of_view_are_kept_and_boxes_partly_in_view_come_back_unclipped():
    view = FRAME.centered(2700, 1500, 8)  # x 2460-2940, y 1365-1635
    inside, partly = cow(2600, 1400, 2640, 1425), cow(2900, 1600, 3100, 1700, suggested=True)
    outside = cow(10, 10, 50, 50)
    boxes = [outside, inside, partly, cow(3500, 2000, 3600, 2100)]
    drawing = boxes_to_objects(boxes, view)["objects"]
    assert [o["stroke"] == SUGGESTED_COLOR for o in drawing] == [False, True]  # only the two in view
    assert drawing[1]["left"] + drawing[1]["width"] > view.canvas_w  # drawn whole, past the canvas edge
    shown = canvas_boxes(Reported(drawing), view)
    assert shown == [inside, partly]  # untouched: exactly the same original px, unclipped
    assert with_hidden(shown, boxes, view) == boxes  # the same list, in the same order
    # the user deletes the box in view and draws a new one: the hidden ones stay, in their places
    new = {"type": "LabeledRect", "label": "cow", "left": 15.0, "top": 30.0, "width": 60.0, "height": 37.5,
           "stroke": "#00e5ff"}
    shown = canvas_boxes(Reported([drawing[1], new]), view)
    assert shown[1] == cow(2470.0, 1385.0, 2510.0, 1410.0)  # canvas px / 1.5 + the view's corner
    assert with_hidden(shown, boxes, view) == [outside, partly, cow(2470.0, 1385.0, 2510.0, 1410.0), boxes[3]]
    # a box dragged past the image edge is clipped to the image, not to the view
    edge = dict(new, left=600.0, top=200.0, width=2000.0, height=2000.0)
    assert canvas_boxes(Reported([edge]), view) == [cow(2860.0, 1498.33, 3840.0, 2160.0)]
    assert canvas_boxes(Reported([dict(new, width=0.5)]), view) == []  # a click, not a drag
    assert canvas_boxes(type("Nothing", (), {"json_data": None})(), view) is None


def test_the_editor_keeps_all_boxes_across_zoom_and_pan(images):
    editor = opened(images, image_id=2)
    assert editor.view == Viewport.fitting(64, 48)
    key, all_boxes = editor.canvas_key, [cow(4.0, 4.0, 20.0, 20.0), cow(40.0, 30.0, 60.0, 44.0)]
    zoomed = editor.view.moved("in").moved("in").centered(10, 10)  # x 0-16, y 0-12: shows only the first
    editor.set_view(all_boxes, 2, zoomed)
    assert editor.view == zoomed and editor.boxes == all_boxes and editor.canvas_key != key
    assert len(boxes_to_objects(editor.boxes, zoomed)["objects"]) == 1
    assert editor.update([cow(4.0, 4.0, 20.0, 20.0)]) == all_boxes and editor.dirty  # one box more than saved
    assert editor.update([]) == [cow(40.0, 30.0, 60.0, 44.0)]  # the one in view deleted
    editor.set_view([], 1, FRAME)  # a click drawn for another image changes nothing
    assert editor.view == zoomed
    editor.save(all_boxes, 2, 0)
    assert editor.open(None) and editor.view == zoomed  # the same image (and same-size ones) keep the view
    assert editor.update(None) == all_boxes and not editor.dirty


def test_view_image_is_the_crop_at_canvas_size(tmp_path):
    from PIL import Image
    import io
    rgb = np.zeros((2160, 3840, 3), np.uint8)
    rgb[1400:1425, 2600:2640] = 255  # a white 40x25 'cow'
    path = tmp_path / "frame.png"
    Image.fromarray(rgb).save(path)
    view = FRAME.centered(2620, 1412, 8)
    crop = np.asarray(Image.open(io.BytesIO(view_image(path, view))))
    assert crop.shape == (405, 720, 3)
    white = np.argwhere(crop.mean(axis=2) > 128)
    (top, left), (bottom, right) = white.min(axis=0), white.max(axis=0) + 1
    expect = view.to_canvas([2600, 1400, 2640, 1425])
    assert abs(left - expect["left"]) <= 2 and abs(right - expect["left"] - expect["width"]) <= 2
    assert abs(top - expect["top"]) <= 2 and abs(bottom - expect["top"] - expect["height"]) <= 2
    assert np.asarray(Image.open(io.BytesIO(view_image(path, FRAME)))).shape == (405, 720, 3)
    thumb = overview(np.zeros((90, 160, 3), np.uint8), view)
    assert thumb.shape == (90, 160, 3) and thumb.any()
