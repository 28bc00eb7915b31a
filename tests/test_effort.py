"""Labeling effort: how saved boxes differ from the suggestions they started from — the pairing
rule on its own (a table), then through Store.set_boxes, the way the Label page records it."""

from __future__ import annotations

import numpy as np
import pytest

from cowdetect.detections import Detections
from cowdetect.effort import Effort, compare
from cowdetect.store import Store

COW = [20.0, 20.0, 60.0, 50.0]

# (suggested boxes, their classes, saved boxes, their classes, expected Effort)
CASES = [
    ("unchanged", [COW], ["cow"], [COW], ["cow"], Effort(1, 1, 0, 0, 0)),
    ("rounded by the canvas", [COW], ["cow"], [[20.3, 19.8, 60.01, 50.4]], ["cow"], Effort(1, 1, 0, 0, 0)),
    ("moved", [COW], ["cow"], [[28.0, 20.0, 68.0, 50.0]], ["cow"], Effort(1, 0, 1, 0, 0)),
    ("resized", [COW], ["cow"], [[20.0, 20.0, 70.0, 56.0]], ["cow"], Effort(1, 0, 1, 0, 0)),
    ("relabelled", [COW], ["cow"], [COW], ["calf"], Effort(1, 0, 1, 0, 0)),
    ("deleted", [COW], ["cow"], [], [], Effort(1, 0, 0, 1, 0)),
    ("added by hand", [], [], [COW], ["cow"], Effort(0, 0, 0, 0, 1)),
    ("a different cow drawn", [COW], ["cow"], [[80.0, 50.0, 120.0, 90.0]], ["cow"], Effort(1, 0, 0, 1, 1)),
    ("nothing either side", [], [], [], [], Effort()),
    ("two kept, one moved, one deleted, one added",
     [COW, [70.0, 10.0, 100.0, 40.0], [5.0, 60.0, 30.0, 90.0], [100.0, 60.0, 125.0, 90.0]], ["cow"] * 4,
     [COW, [70.0, 10.0, 100.0, 40.0], [8.0, 62.0, 33.0, 92.0], [40.0, 60.0, 60.0, 80.0]], ["cow"] * 4,
     Effort(4, 2, 1, 1, 1)),
]


@pytest.mark.parametrize("what, suggested, s_names, saved, saved_names, expected", CASES, ids=[c[0] for c in CASES])
def test_compare(what, suggested, s_names, saved, saved_names, expected):
    assert compare(np.array(suggested).reshape(-1, 4), s_names, np.array(saved).reshape(-1, 4),
                   saved_names) == expected


def test_compare_needs_one_name_per_box():
    with pytest.raises(ValueError, match="one class name per box"):
        compare(np.array([COW]), [], np.zeros((0, 4)), [])


def test_efforts_add_up():
    assert Effort(1, 1, 0, 0, 0) + Effort(2, 0, 1, 1, 3) == Effort(3, 1, 1, 1, 3)
    assert Effort(3, 1, 1, 1, 3).as_dict() == {"suggested": 3, "unchanged": 1, "changed": 1, "deleted": 1,
                                               "added": 3}


def boxes(store: Store, xyxy: list, names: list[str], scored: bool = False) -> Detections:
    return Detections.from_names(np.array(xyxy, np.float32).reshape(-1, 4), names, store.class_names(),
                                 score=np.full(len(names), 0.8, np.float32) if scored else None)


@pytest.fixture
def effort_store(tmp_path) -> tuple[Store, list[int]]:
    store = Store(tmp_path / "data")
    store.add_class("calf")
    rng = np.random.default_rng(0)
    ids = [store.add_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), f"{i}.png")[0].id for i in range(5)]
    (tmp_path / "tiny.pt").write_bytes(b"weights")  # a version row to credit (its file is never opened here)
    assert store.add_model("tiny", "fasterrcnn_mobilenet_v3_large_320_fpn", ["cow"], tmp_path / "tiny.pt").id == 1
    return store, ids


def test_saving_a_suggested_image_records_the_effort_per_source(effort_store):
    store, ids = effort_store
    a, b, c, d, plain = ids
    for image_id in (a, b, c):
        store.set_suggestions(image_id, boxes(store, [COW, [70, 10, 100, 40]], ["cow", "cow"], True), "tiny (#1)", 1)
    store.set_suggestions(d, boxes(store, [COW], ["cow"], True), "pretrained ssd_mobilenet_v2_coco")
    store.set_boxes(a, boxes(store, [COW, [70, 10, 100, 40]], ["cow", "cow"]))      # both kept
    store.set_boxes(b, boxes(store, [[26, 20, 66, 50]], ["cow"]))                   # one moved, one deleted
    store.set_boxes(c, boxes(store, [COW, [70, 10, 100, 40], [5, 60, 30, 90]], ["calf", "cow", "cow"]))  # relabel, add
    store.set_boxes(d, boxes(store, [], []))                                         # the one box deleted
    store.set_boxes(plain, boxes(store, [COW], ["cow"]))                             # no suggestions: no effort
    rows = {r["source"]: r for r in store.effort()}
    assert rows == {
        "tiny (#1)": {"source": "tiny (#1)", "model_id": 1, "images": 3, "suggested": 6, "unchanged": 3,
                      "changed": 2, "deleted": 1, "added": 1},
        "pretrained ssd_mobilenet_v2_coco": {"source": "pretrained ssd_mobilenet_v2_coco", "model_id": None,
                                             "images": 1, "suggested": 1, "unchanged": 0, "changed": 0,
                                             "deleted": 1, "added": 0}}
    assert len(store.boxes(a)) == 2 and store.suggestions(a) is not None  # suggestions kept beside ground truth


def test_the_effort_is_the_review_not_later_edits(effort_store):
    store, ids = effort_store
    store.set_suggestions(ids[0], boxes(store, [COW], ["cow"], True), "tiny (#1)", 1)
    store.set_boxes(ids[0], boxes(store, [[30, 20, 70, 50]], ["cow"]))
    assert [(r["images"], r["changed"], r["unchanged"]) for r in store.effort()] == [(1, 1, 0)]
    store.set_boxes(ids[0], boxes(store, [COW], ["cow"]))  # a later edit of a labeled image is not a review
    assert [(r["images"], r["changed"], r["unchanged"]) for r in store.effort()] == [(1, 1, 0)]
    store.set_suggestions(ids[0], boxes(store, [COW], ["cow"], True), "tiny (#1)", 1)  # new suggestions, labeled image
    store.set_boxes(ids[0], boxes(store, [], []))
    assert [(r["images"], r["changed"], r["unchanged"]) for r in store.effort()] == [(1, 1, 0)]
