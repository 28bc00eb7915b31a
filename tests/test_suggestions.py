"""Suggestion sets in the store: kept apart from ground truth, image states, and the order of
"next to label" (most uncertain first, one image per near-identical scene)."""

from __future__ import annotations

import numpy as np
import pytest

from cowdetect.detections import Detections
from cowdetect.images import hash_distance
from cowdetect.store import Store


def scene(seed: int) -> np.ndarray:
    """A 128x96 RGB picture of blocks, different for each seed (pHashes ~30 bits apart)."""
    rng = np.random.default_rng(seed)
    img = np.full((96, 128, 3), (60, 140, 60), np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(0, 100)), int(rng.integers(0, 70))
        img[y:y + 26, x:x + 28] = rng.integers(0, 255, 3)
    return img


def suggested(store: Store, xyxy: list, names: list[str], scores: list[float]) -> Detections:
    return Detections.from_names(np.array(xyxy, np.float32).reshape(-1, 4), names, store.class_names(),
                                 score=np.array(scores, np.float32))


@pytest.fixture
def scenes(tmp_path) -> tuple[Store, dict[str, int]]:
    """Five scenes in 'train' (c2 is c a moment later: a few pixels differ), one in 'val'."""
    store = Store(tmp_path / "data")
    ids = {}
    for name, seed in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
        ids[name] = store.add_image(scene(seed), f"{name}.png", "train")[0].id
    near = scene(3)
    near[:2, :2] = 0
    ids["c2"] = store.add_image(near, "c2.png", "train")[0].id
    ids["v"] = store.add_image(scene(5), "v.png", "val")[0].id
    return store, ids


def test_the_near_identical_pair_is_near_and_the_rest_are_not(scenes):
    store, ids = scenes
    hashes = {name: store.image(i).phash for name, i in ids.items()}
    assert hash_distance(hashes["c"], hashes["c2"]) < 6
    assert min(hash_distance(hashes[x], hashes[y]) for x in "abcd" for y in "abcd" if x < y) >= 6


def test_suggestions_are_kept_apart_from_ground_truth(scenes):
    store, ids = scenes
    store.set_boxes(ids["a"], suggested(store, [[1, 1, 20, 20]], ["cow"], [1.0]))
    count = store.set_suggestions(ids["a"], suggested(store, [[5, 5, 40, 40], [50, 5, 90, 40]], ["cow", "cow"],
                                                      [0.9, 0.6]), "tiny (#1)", None, None, 0.5, 1.0)
    assert count == 2
    assert store.boxes(ids["a"]).xyxy.tolist() == [[1, 1, 20, 20]]  # ground truth as it was
    got = store.suggestions(ids["a"])
    assert (got.source, got.model_id, got.score_threshold, got.uncertainty) == ("tiny (#1)", None, 0.5, 1.0)
    assert got.boxes.xyxy.tolist() == [[5, 5, 40, 40], [50, 5, 90, 40]]
    assert got.boxes.score.tolist() == pytest.approx([0.9, 0.6])
    assert store.suggestions(ids["b"]) is None
    store.set_suggestions(ids["a"], suggested(store, [], [], []), "tiny (#1)")  # replaced by an empty set
    assert len(store.suggestions(ids["a"]).boxes) == 0


SET_ERRORS = [
    ("an empty source", dict(source=""), "source: expected"),
    ("an unknown image", dict(image="nosuch"), "no such image"),
]


@pytest.mark.parametrize("what, change, message", SET_ERRORS, ids=[e[0] for e in SET_ERRORS])
def test_bad_suggestions_store_nothing(scenes, what, change, message):
    store, ids = scenes
    dets = suggested(store, change.get("xyxy", [[1, 1, 10, 10]]), ["cow"], [0.9])
    with pytest.raises(ValueError, match=message):
        store.set_suggestions(999 if change.get("image") else ids["b"], dets, change.get("source", "tiny (#1)"))
    assert store.suggestions(ids["b"]) is None


def test_boxes_past_the_edge_are_clipped_and_boxes_outside_dropped(scenes):
    """A model's (or a tracker's) box may reach past the image's edge: kept, clipped to it."""
    store, ids = scenes
    record = store.image(ids["b"])
    w, h = record.width, record.height
    dets = suggested(store, [[-3, -2, 20, 20], [w - 10, h - 10, w + 7, h + 5], [w + 5, 0, w + 40, 10]],
                     ["cow"] * 3, [0.9, 0.8, 0.7])
    assert store.set_suggestions(ids["b"], dets, "tiny (#1)") == 2
    got = store.suggestions(ids["b"]).boxes
    assert got.xyxy.tolist() == [[0, 0, 20, 20], [w - 10, h - 10, w, h]] and got.score.tolist() == pytest.approx([0.9, 0.8])


def test_boxes_of_classes_the_store_lacks_are_dropped(scenes):
    store, ids = scenes
    coco = Detections.from_names(np.array([[1, 1, 10, 10], [20, 20, 40, 40]], np.float32), ["cow", "person"],
                                 ("__background__", "person", "cow"), score=np.array([0.9, 0.9], np.float32))
    assert store.set_suggestions(ids["b"], coco, "coco:ssd_mobilenet_v2_coco") == 1
    assert store.suggestions(ids["b"]).boxes.names == ["cow"]


def test_states_and_their_counts(scenes):
    store, ids = scenes
    assert store.count_states() == {"unlabeled": 6, "suggested": 0, "labeled": 0}
    store.set_suggestions(ids["a"], suggested(store, [], [], []), "tiny (#1)")
    store.set_suggestions(ids["b"], suggested(store, [[1, 1, 9, 9]], ["cow"], [0.7]), "tiny (#1)")
    store.set_boxes(ids["b"], suggested(store, [[1, 1, 9, 9]], ["cow"], [1.0]))  # saved: labeled, whatever else
    store.set_suggestions(ids["v"], suggested(store, [], [], []), "tiny (#1)")
    assert store.image_states([ids["a"], ids["b"], ids["c"]]) == {ids["a"]: "suggested", ids["b"]: "labeled",
                                                                  ids["c"]: "unlabeled"}
    assert store.count_states() == {"unlabeled": 3, "suggested": 2, "labeled": 1}
    assert store.count_states("train") == {"unlabeled": 3, "suggested": 1, "labeled": 1}
    assert store.count_states("test") == {"unlabeled": 0, "suggested": 0, "labeled": 0}
    assert store.image_states([]) == {}


def test_to_label_puts_the_most_uncertain_first_and_near_identical_scenes_last(scenes):
    store, ids = scenes
    for name, u in (("a", 0.2), ("b", 3.0), ("c", 2.0), ("c2", 2.5)):
        store.set_suggestions(ids[name], suggested(store, [], [], []), "tiny (#1)", uncertainty=u)
    order = [r.id for r in store.to_label("train", limit=10)]
    # c2 (2.5) first of its scene; c (2.0) is the same scene: after all others; d has no score
    assert order == [ids["b"], ids["c2"], ids["a"], ids["d"], ids["c"]]
    assert [r.id for r in store.to_label("train", limit=2)] == [ids["b"], ids["c2"]]
    assert [r.id for r in store.to_label("train", limit=10, order="id")] == [ids[n] for n in ("a", "b", "c", "d", "c2")]
    store.set_boxes(ids["b"], suggested(store, [], [], []))  # labeled: no longer to label
    assert [r.id for r in store.to_label(None, limit=10)] == [ids["c2"], ids["a"], ids["d"], ids["v"], ids["c"]]
    store.set_boxes(ids["c2"], suggested(store, [], [], []))  # c's scene is labeled now: c comes last
    assert [r.id for r in store.to_label(None, limit=10)] == [ids["a"], ids["d"], ids["v"], ids["c"]]
    with pytest.raises(ValueError, match="order: expected"):
        store.to_label(order="random")
