"""The SQLite store: persistence, dedupe, splits, and bad input that must change nothing."""

import io
import sqlite3
import threading
from pathlib import Path

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


def checkpoint_file(store: Store, content: bytes = b"weights") -> Path:
    path = store.data_dir / "scratch.pt"
    path.write_bytes(content)
    return path


def test_bad_split_and_names(store):
    with pytest.raises(ValueError, match="split: expected one of"):
        store.add_image(jpeg(), split="holdout")
    for bad in ("../../etc/passwd", "12", "3rd", "model.pt", "active", "pretrained", ""):
        with pytest.raises(ValueError, match="name: expected letters"):
            store.add_model(bad, "arch", ["cow"], checkpoint_file(store))
    with pytest.raises(ValueError, match="leaves the data folder"):
        store.inside("../outside.txt")
    with pytest.raises(ValueError, match="no such image"):
        store.image(999)
    with pytest.raises(ValueError, match="no version called 'nope'"):
        store.model_by_name("nope")
    with pytest.raises(ValueError, match="no version with id 7"):
        store.model(7)
    with pytest.raises(ValueError, match="model id: expected a whole number"):
        store.model("7")  # a string is a spec: cowdetect.models.resolve reads those


def test_models_and_runs(store):
    m = store.add_model("m1", "arch", ["cow"], checkpoint_file(store), params={"iterations": 3})
    assert store.model_by_name("m1").id == m.id == store.model(m.id).id and m.label == f"m1 (#{m.id})"
    assert m.checkpoint == store.data_dir / "models" / "by-id" / f"{m.id}.pt" and m.checkpoint.read_bytes() == b"weights"
    with pytest.raises(ValueError, match="taken"):
        store.add_model("m1", "arch", ["cow"], checkpoint_file(store))
    assert store.add_model("m1", "arch", ["cow"], checkpoint_file(store), unique=True).name == "m1-2"
    long = "x" * 100
    store.add_model(long, "arch", ["cow"], checkpoint_file(store))
    assert store.add_model(long, "arch", ["cow"], checkpoint_file(store), unique=True).name == "x" * 98 + "-2"
    run, created = store.add_run("train", {"a": 1}, total=10)
    assert created and store.add_run("train", {"a": 1}, total=10) == (run, False)  # identical and active: the same
    store.update_run(run, status="done", iteration=10, metrics={"loss": 1.0})
    got = store.runs()[0]
    assert (got.id, got.status, got.iteration, got.metrics, got.active) == (run, "done", 10, {"loss": 1.0}, False)
    with pytest.raises(ValueError, match="status"):
        store.update_run(run, status="exploded")
    with pytest.raises(ValueError, match="run fields"):
        store.update_run(run, history=[])


def test_a_deleted_version_id_is_never_given_again(store):
    """'#2' in a queued job or an open page must never come to mean a later version."""
    store.add_model("a", "arch", ["cow"], checkpoint_file(store))
    b = store.add_model("b", "arch", ["cow"], checkpoint_file(store))
    store.delete_model(b.id)
    c = store.add_model("c", "arch", ["cow"], checkpoint_file(store))
    assert c.id > b.id and not b.checkpoint.exists() and c.checkpoint.is_file()


def test_rename_then_reuse_the_old_name_keeps_both_weights(store):
    """Files are named by id: a new version given a renamed version's old name cannot overwrite it."""
    first = store.add_model("cow", "arch", ["cow"], checkpoint_file(store, b"first"))
    store.rename_model(first.id, "cow-old")
    second = store.add_model("cow", "arch", ["cow"], checkpoint_file(store, b"second"))
    assert store.model(first.id).checkpoint.read_bytes() == b"first"
    assert second.checkpoint.read_bytes() == b"second" and second.checkpoint != first.checkpoint


def test_a_model_name_that_is_all_digits_is_renamed_by_the_migration(tmp_path):
    """Before schema 4 a version could be called "1": "1" then meant two models (id 1 and that name)."""
    import sqlite3 as sql
    from cowdetect.store.schema import MIGRATIONS
    db = tmp_path / "data" / "cowdetect.sqlite"
    db.parent.mkdir()
    with sql.connect(db) as conn:
        for number, script in enumerate(MIGRATIONS[:3]):
            conn.executescript(script + f"; PRAGMA user_version = {number + 1};")
        conn.execute("INSERT INTO models(name, architecture, classes, checkpoint) VALUES ('first', 'a', '[]', 'x.pt')")
        conn.execute("INSERT INTO models(name, architecture, classes, checkpoint) VALUES ('1', 'a', '[]', 'y.pt')")
    store = Store(tmp_path / "data")
    assert [m.name for m in store.models()] == ["first", "v2-1"]


def test_images_from_schema_4_get_their_hash_when_first_ordered(tmp_path):
    """Schema 5 adds perceptual hashes; images stored before have none until "next to label" reads
    them: then near-identical old images are still told apart."""
    import sqlite3 as sql
    from cowdetect.images import encode_image
    from cowdetect.store.schema import MIGRATIONS
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    picture = np.full((64, 96, 3), 90, np.uint8)
    picture[10:40, 20:60] = 230
    with sql.connect(data / "cowdetect.sqlite") as conn:
        for number, script in enumerate(MIGRATIONS[:4]):
            conn.executescript(script + f"; PRAGMA user_version = {number + 1};")
        for i, brightness in enumerate((230, 231, 0)):  # the same scene twice (one level brighter), another
            picture[10:40, 20:60] = brightness
            if not brightness:
                picture[:, 70:] = 255
            (data / "images" / f"old{i}.png").write_bytes(encode_image(picture, "PNG"))
            conn.execute("INSERT INTO images(sha256, file, width, height) VALUES (?, ?, 96, 64)",
                         (f"h{i}", f"images/old{i}.png"))
    store = Store(data)
    assert [r.phash for r in store.images()] == [None, None, None]
    assert [r.id for r in store.to_label(limit=3)] == [1, 3, 2]  # the second is near-identical: last, not gone
    assert all(r.phash is not None for r in store.images())


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


def test_bad_rename_changes_nothing(store):
    a, _ = (store.add_model(name, "arch", ["cow"], checkpoint_file(store)) for name in ("a", "b"))
    checkpoint_file(store).unlink()
    before = snapshot(store)
    with pytest.raises(ValueError, match="is taken"):
        store.rename_model(a.id, "b")
    with pytest.raises(ValueError, match="name: expected letters"):
        store.rename_model(a.id, "../evil")
    with pytest.raises(ValueError, match="no version with id 99"):
        store.set_active_model(99)
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

    ids = [store.add_image(encode_image(np.full((32, 32, 3), i, np.uint8), "PNG"), split="train" if i % 2 else "val")[0].id
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


def test_four_processes_importing_the_same_images_store_each_once(tmp_path):
    """Before: two `import-images` of the same files started together died with an IntegrityError,
    or left a row whose file the losing process had deleted. Now: one row and one file per image."""
    import subprocess
    import sys
    files = []
    for i in range(30):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(jpeg(1000 + i))
    data = tmp_path / "data"
    Store(data)  # the schema exists before the race (a fresh folder is tested by the migration lock)
    procs = [subprocess.Popen([sys.executable, "-m", "cowdetect", "import-images", *map(str, files), "--data-dir",
                               str(data), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outputs]
    import json
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["added"] for r in reports) == 30 and all(r["added"] + r["already_present"] == 30 for r in reports)
    store = Store(data)
    records = store.images()
    assert len(records) == 30 and all(r.path.is_file() for r in records)
    assert sorted(p.name for p in (data / "images").rglob("*") if p.is_file()) == sorted(r.path.name for r in records)


def test_processes_opening_a_new_data_folder_at_once_all_succeed(tmp_path):
    import subprocess
    import sys
    data = tmp_path / "fresh"
    procs = [subprocess.Popen([sys.executable, "-c", f"from cowdetect.store import Store; Store({str(data)!r})"],
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, errors
    with sqlite3.connect(data / "cowdetect.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
