"""The SQLite store: persistence, dedupe, splits, and bad input that must change nothing."""

import io
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from cowdetect.detections import Detections
from cowdetect.store import SCHEMA_VERSION, Store

VOCAB = ("__background__", "cow")


def jpeg(seed: int = 0, size=(64, 48)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def cows(*boxes):
    return Detections.from_names(np.array(boxes, np.float32).reshape(-1, 4), ["cow"] * len(boxes), VOCAB)


def snapshot(store: Store):
    files = sorted(p.relative_to(store.data_dir).as_posix() for p in store.data_dir.rglob("*")
                   if p.is_file() and not p.name.startswith("cowdetect.sqlite"))
    with store.connect() as conn:
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
                for t in ("images", "boxes", "models", "classes")}
    return files, {t: [tuple(r) for r in v] for t, v in rows.items()}


def test_schema_wal_and_reopen(store):
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rec, created = store.add_image(jpeg(), name="a.jpg", split="train", boxes=cows([1, 2, 30, 40]))
    assert created and rec.path.is_file() and rec.path.is_relative_to(store.data_dir)
    assert rec.path.name.startswith(rec.sha256)
    again = Store(store.data_dir)  # a restart
    assert [r.id for r in again.images()] == [rec.id]
    np.testing.assert_array_equal(again.boxes(rec.id).xyxy, [[1, 2, 30, 40]])
    assert again.image(rec.id).labeled and again.image(rec.id).width == 64


def test_duplicates_are_stored_once(store):
    a, created_a = store.add_image(jpeg(1), name="one.jpg")
    b, created_b = store.add_image(jpeg(1), name="copy.jpg")
    assert created_a and not created_b and a.id == b.id and len(store.images()) == 1


def test_splits_and_dataset(store):
    r1, _ = store.add_image(jpeg(1), split="train", boxes=cows([0, 0, 10, 10], [5, 5, 20, 20]))
    r2, _ = store.add_image(jpeg(2), split="train", boxes=cows())  # labeled, no cow: a negative
    r3, _ = store.add_image(jpeg(3), split="train")  # not labeled: left out
    ds = store.dataset("train")
    assert [s.image_id for s in ds] == [r1.id, r2.id] and ds.num_boxes == 2 and ds.classes == ("cow",)
    store.set_split([r1.id], "test")
    assert [s.image_id for s in store.dataset("test")] == [r1.id]
    assert store.counts()["splits"] == {"train": 2, "val": 0, "test": 1, "unassigned": 0}
    h = store.dataset_hash("test")
    store.set_boxes(r1.id, cows([0, 0, 11, 10]))
    assert store.dataset_hash("test") != h


@pytest.mark.parametrize("data, boxes, message", [
    (b"", None, "empty"),
    (b"not an image at all", None, "not an image"),
    (jpeg()[:300], None, "corrupt or truncated"),
    (jpeg(), cows([10, 10, 80, 20]), "outside the 64x48 image"),
    (jpeg(), Detections.from_names([[0, 0, 5, 5]], ["dog"], ("__background__", "cow", "dog")), "not in the dataset"),
])
def test_bad_input_changes_nothing(store, data, boxes, message):
    store.add_image(jpeg(9), name="keep.jpg", split="train", boxes=cows([1, 1, 5, 5]))
    before = snapshot(store)
    with pytest.raises(ValueError, match=message):
        store.add_image(data, name="bad.jpg", split="train", boxes=boxes)
    assert snapshot(store) == before


def test_bad_boxes_on_update_change_nothing(store):
    rec, _ = store.add_image(jpeg(4), boxes=cows([1, 1, 5, 5]))
    before = snapshot(store)
    with pytest.raises(ValueError, match="outside"):
        store.set_boxes(rec.id, cows([1, 1, 5, 5], [0, 0, 65, 10]))
    assert snapshot(store) == before


def test_bad_split_and_names(store):
    with pytest.raises(ValueError, match="split: expected one of"):
        store.add_image(jpeg(), split="holdout")
    with pytest.raises(ValueError, match="name: expected letters"):
        store.model_checkpoint_path("../../etc/passwd")
    with pytest.raises(ValueError, match="leaves the data folder"):
        store.inside("../outside.txt")
    with pytest.raises(ValueError, match="no such image"):
        store.boxes(999) if False else store.image(999)
    with pytest.raises(ValueError, match="no version called 'nope'"):
        store.model("nope")


def test_models_and_runs(store):
    path = store.model_checkpoint_path("m1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    m = store.add_model("m1", "arch", ["cow"], path, params={"iterations": 3})
    assert store.model("m1").id == m.id == store.model(str(m.id)).id and store.latest_model().name == "m1"
    with pytest.raises(ValueError, match="taken"):
        store.add_model("m1", "arch", ["cow"], path)
    assert store.unique_model_name("m1") == "m1-2"
    run = store.add_run("train", {"a": 1}, total=10)
    store.update_run(run, status="done", iteration=10, history=[{"loss": 1.0}])
    assert store.runs()[0]["status"] == "done" and store.runs()[0]["history"] == [{"loss": 1.0}]
    with pytest.raises(ValueError, match="status"):
        store.update_run(run, status="exploded")


def test_concurrent_writers_lose_nothing(store):
    """Two threads (two app sessions) adding images at once: every image arrives."""
    errors = []

    def add(offset):
        try:
            for i in range(10):
                store.add_image(jpeg(100 + offset + i), split="train", boxes=cows([0, 0, 4, 4]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=add, args=(k * 10,)) for k in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(store.images()) == 20 and store.counts()["boxes"] == 20


def test_predictions_are_kept_per_model_apart_from_ground_truth(store):
    rec, _ = store.add_image(jpeg(5), boxes=cows([1, 1, 20, 20]))
    path = store.model_checkpoint_path("m")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    model = store.add_model("m", "arch", ["cow"], path)
    coco_like = ("__background__", "person", "cow")
    pred = Detections([[0, 0, 30, 30], [-0.3, 2, 64.4, 40], [5, 5, 9, 9]], [1, 2, 2], [0.9, 0.8, 0.3], coco_like)
    store.set_predictions(rec.id, model.id, pred)
    got = store.predictions(rec.id, model.id)
    assert got.names == ["cow", "cow"] and got.score.tolist() == pytest.approx([0.8, 0.3])
    assert got.xyxy[0].tolist() == pytest.approx([0, 2, 64, 40])  # clipped to the 64x48 image
    np.testing.assert_array_equal(store.boxes(rec.id).xyxy, [[1, 1, 20, 20]])  # ground truth untouched
    store.set_predictions(rec.id, model.id, Detections.empty(coco_like, scored=True))
    assert len(store.predictions(rec.id, model.id)) == 0 and len(store.boxes(rec.id)) == 1


def test_bad_rename_changes_nothing(store):
    for name in ("a", "b"):
        path = store.model_checkpoint_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        store.add_model(name, "arch", ["cow"], path)
    before = snapshot(store)
    with pytest.raises(ValueError, match="is taken"):
        store.rename_model("a", "b")
    with pytest.raises(ValueError, match="name: expected letters"):
        store.rename_model("a", "../evil")
    with pytest.raises(ValueError, match="no version called 'zzz'"):
        store.set_active_model("zzz")
    assert snapshot(store) == before


def test_two_editors_at_once(store):
    """Two sessions (each its own Store, i.e. connections) saving in threads: different images lose
    nothing; on one image every save lands, versions count them, and the last save wins."""
    from cowdetect.images import encode_image

    ids = [store.add_image(encode_image(np.full((40, 60, 3), i * 40, np.uint8), "PNG"))[0].id for i in range(3)]
    vocab = store.class_names()
    errors = []

    def editor(image_id: int, offset: int, rounds: int = 25) -> None:
        mine = Store(store.data_dir)
        try:
            for r in range(rounds):
                mine.set_boxes(image_id, Detections.from_names([[offset, 1, offset + 5 + r % 3, 9]], ["cow"], vocab))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=editor, args=(ids[0], 1)), threading.Thread(target=editor, args=(ids[1], 2)),
               threading.Thread(target=editor, args=(ids[2], 3)), threading.Thread(target=editor, args=(ids[2], 20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.boxes(ids[0]).xyxy.tolist() == [[1, 1, 1 + 5 + 24 % 3, 9]]
    assert store.boxes(ids[1]).xyxy.tolist() == [[2, 1, 2 + 5 + 24 % 3, 9]]
    assert store.version(ids[2]) == 50 and len(store.boxes(ids[2])) == 1  # one editor's last save, whole


def test_paging_queries(store):
    from cowdetect.images import encode_image

    ids = [store.add_image(encode_image(np.full((20, 20, 3), i, np.uint8), "PNG"), split="train" if i % 2 else "val")[0].id
           for i in range(7)]
    store.set_boxes(ids[1], Detections.empty(store.class_names()))
    assert store.count_images() == 7 and store.count_images("train") == 3 and store.count_images("train", True) == 1
    assert [r.id for r in store.images_page(2, 2)] == ids[2:4]
    assert [r.id for r in store.images_page(0, 10, "val")] == ids[0::2]
    assert store.image_index(ids[5], "train") == 2
    assert store.next_unlabeled(ids[1], "train").id == ids[3]
    assert store.next_unlabeled(ids[5], "train").id == ids[3]  # wraps around
    assert store.box_counts([ids[1], ids[2]]) == {ids[1]: 0, ids[2]: 0}
    moved = store.assign_splits((1, 0, 0))
    assert moved == {"train": 0, "val": 0, "test": 0}  # nothing unassigned here
