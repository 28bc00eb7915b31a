"""Imports are all or nothing, or say exactly what they did (issue 14, "Trust", item 3).

A COCO file with a problem anywhere — a wrong type, NaN, a duplicate id — is refused as a whole,
with one line naming the entry and field, and stores nothing. Per-image problems skip that image
with the reason. An error on the way (a file that cannot be read, a database that refuses a row)
stores nothing, and leaves no file behind. Images training cannot use are refused at the door.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cowdetect.data import LabeledDataset
from cowdetect.detections import Detections
from cowdetect.formats import import_coco, import_images
from cowdetect.images import encode_image
from cowdetect.store import Store

VOCAB = ("__background__", "cow")


def png(seed: int, width: int = 64, height: int = 64) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8), "PNG")


def cows(*boxes) -> Detections:
    return Detections.from_names(np.array(boxes, np.float32).reshape(-1, 4), ["cow"] * len(boxes), VOCAB)


def snapshot(store: Store):
    """Everything an import could change: files under the data folder, and the rows of every table it writes."""
    files = sorted(p.relative_to(store.data_dir).as_posix() for p in store.data_dir.rglob("*")
                   if p.is_file() and not p.name.startswith("cowdetect.sqlite"))
    with store.connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY id")]
                for t in ("images", "boxes", "classes", "activity")}
    return files, rows


@pytest.fixture
def stocked(tmp_path: Path) -> Store:
    """A store that already holds one labeled image: a refused import must leave it exactly as it is."""
    store = Store(tmp_path / "data")
    store.add_image(png(999), name="old.png", split="train", boxes=cows([1, 1, 20, 20]))
    return store


def coco_folder(tmp_path: Path, n: int = 5) -> tuple[dict, Path]:
    """A valid COCO dict of ``n`` 64x64 images (ids 100...), one cow box each, and their folder."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        (folder / f"{i}.png").write_bytes(png(i))
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": 64, "height": 64})
        annotations.append({"id": 1000 + i, "image_id": 100 + i, "category_id": 21, "bbox": [2, 3, 20, 10],
                            "area": 200, "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": 21, "name": "cow"}]}, folder


def setter(section: str, index: int, key: str, value):
    def change(coco: dict) -> dict:
        coco[section][index][key] = value
        return coco
    return change


def dropper(section: str, index: int, key: str):
    def change(coco: dict) -> dict:
        del coco[section][index][key]
        return coco
    return change


def appender(section: str, index: int, **changes):
    def change(coco: dict) -> dict:
        coco[section].append({**coco[section][index], **changes})
        return coco
    return change


def raw(text_change):
    """A change to the JSON text itself (what json.dumps cannot write)."""
    return ("text", text_change)


BAD_COCO = [
    # duplicates: one image would get the other's boxes
    ("duplicate image id", appender("images", 0, file_name="x.png"),
     "COCO JSON: image ids used more than once: [100]; each image needs its own id"),
    ("duplicate annotation id", appender("annotations", 0, image_id=101),
     "COCO JSON: annotation ids used more than once: [1000]; each annotation needs its own id"),
    ("duplicate category id", appender("categories", 0, name="calf"),
     "COCO JSON: category ids used more than once: [21]; each category needs its own id"),
    ("an image listed twice", appender("images", 0, id=777),
     "COCO JSON: file_name listed by more than one image: ['0.png']; list each image once"),
    # the last image's width: before, the four images ahead of it were stored and then it failed
    ("width 1e308 on the last image", setter("images", 4, "width", 1e308),
     "COCO JSON: image 104: width must be a positive whole number, got 1e+308"),
    ("width a list", setter("images", 2, "width", [1, 2]),
     "COCO JSON: image 102: width must be a positive whole number, got [1, 2]"),
    ("width an object", setter("images", 0, "width", {"px": 64}),
     "COCO JSON: image 100: width must be a positive whole number, got {'px': 64}"),
    ("width a string", setter("images", 0, "width", "64"),
     "COCO JSON: image 100: width must be a positive whole number, got '64'"),
    ("width a boolean", setter("images", 0, "width", True),
     "COCO JSON: image 100: width must be a positive whole number, got True"),
    ("width zero", setter("images", 0, "width", 0),
     "COCO JSON: image 100: width must be a positive whole number, got 0"),
    ("width missing", dropper("images", 3, "width"),
     "COCO JSON: image 103: width is missing (expected a positive whole number)"),
    ("height NaN", setter("images", 1, "height", float("nan")),
     "COCO JSON: image 101: height must be a positive whole number, got NaN"),
    ("height Infinity", setter("images", 1, "height", float("inf")),
     "COCO JSON: image 101: height must be a positive whole number, got Infinity"),
    ("a trillion pixels", setter("images", 0, "height", 10**12),
     "COCO JSON: image 100: 64x1000000000000 px is more than the 50 megapixels cowdetect accepts"),
    ("image id a boolean", setter("images", 0, "id", True),
     "COCO JSON: images[0]: id must be a whole number (0 or more), got True"),
    ("image id a string", setter("images", 0, "id", "100"),
     "COCO JSON: images[0]: id must be a whole number (0 or more), got '100'"),
    ("image id a fraction", setter("images", 0, "id", 100.5),
     "COCO JSON: images[0]: id must be a whole number (0 or more), got 100.5"),
    ("image id a list", setter("images", 0, "id", [100]),
     "COCO JSON: images[0]: id must be a whole number (0 or more), got [100]"),
    ("image not an object", lambda c: {**c, "images": ["0.png"]},
     "COCO JSON: images[0] must be an object, got '0.png'"),
    ("file_name a number", setter("images", 0, "file_name", 7),
     "COCO JSON: image 100: file_name must be a file name, got 7"),
    ("file_name empty", setter("images", 0, "file_name", " "),
     "COCO JSON: image 100: file_name must be a file name, got ' '"),
    ("file_name of 5000 characters", setter("images", 0, "file_name", "a" * 4996 + ".png"),
     "COCO JSON: image 100: file_name " + "a" * 60 + "… (5000 characters) is too long: 5000 bytes in one name, "
     "file systems allow 255"),
    ("annotation id a boolean", setter("annotations", 0, "id", False),
     "COCO JSON: annotations[0]: id must be a whole number (0 or more), got False"),
    ("annotation image_id a list", setter("annotations", 1, "image_id", [101]),
     "COCO JSON: annotation 1001: image_id must be a whole number (an image's id), got [101]"),
    ("annotation category_id a string", setter("annotations", 1, "category_id", "21"),
     "COCO JSON: annotation 1001: category_id must be a whole number (a category's id), got '21'"),
    ("annotation category_id null", setter("annotations", 1, "category_id", None),
     "COCO JSON: annotation 1001: category_id must be a whole number (a category's id), got None"),
    ("bbox a string", setter("annotations", 2, "bbox", "2,3,20,10"),
     "COCO JSON: annotation 1002: bbox must be [x, y, width, height] (4 finite numbers), got '2,3,20,10'"),
    ("bbox of 3 numbers", setter("annotations", 2, "bbox", [2, 3, 20]),
     "COCO JSON: annotation 1002: bbox must be [x, y, width, height] (4 finite numbers), got [2, 3, 20]"),
    ("bbox with Infinity", setter("annotations", 2, "bbox", [2, 3, float("inf"), 10]),
     "COCO JSON: annotation 1002: bbox must be [x, y, width, height] (4 finite numbers), got [2, 3, Infinity, 10]"),
    ("bbox with a boolean", setter("annotations", 2, "bbox", [2, True, 20, 10]),
     "COCO JSON: annotation 1002: bbox must be [x, y, width, height] (4 finite numbers), got [2, True, 20, 10]"),
    ("bbox missing", dropper("annotations", 2, "bbox"),
     "COCO JSON: annotation 1002: bbox is missing (expected [x, y, width, height] (4 finite numbers))"),
    ("iscrowd a word", setter("annotations", 0, "iscrowd", "no"),
     "COCO JSON: annotation 1000: iscrowd must be 0 or 1, got 'no'"),
    ("iscrowd 2", setter("annotations", 0, "iscrowd", 2),
     "COCO JSON: annotation 1000: iscrowd must be 0 or 1, got 2"),
    ("category id a boolean", setter("categories", 0, "id", True),
     "COCO JSON: categories[0]: id must be a whole number (0 or more), got True"),
    ("category name a number", setter("categories", 0, "name", 5),
     "COCO JSON: category 21: name must be a class name (1 to 64 printable characters), got 5"),
    ("category name missing", dropper("categories", 0, "name"),
     "COCO JSON: category 21: name is missing (expected a class name (1 to 64 printable characters))"),
    # values cowdetect does not read: still no NaN / Infinity in a JSON file
    ("area Infinity", setter("annotations", 3, "area", float("inf")),
     "COCO JSON: annotation 1003: area is Infinity; JSON has no NaN or Infinity"),
    ("info.year NaN", lambda c: {**c, "info": {"year": float("nan")}},
     "COCO JSON: info.year is NaN; JSON has no NaN or Infinity"),
    ("a number too large for a float", raw(lambda t: t.replace('"area": 200', '"area": 1e400', 1)),
     "COCO JSON: annotation 1000: area is Infinity; JSON has no NaN or Infinity"),
    ("100,000 levels of nesting",
     raw(lambda t: t.replace('"area": 200', '"area": ' + "[" * 100_000 + "]" * 100_000, 1)),
     "COCO JSON: not a COCO file (lists or objects nested thousands of levels deep)"),
    ("a 5000-digit number", raw(lambda t: t.replace('"area": 200', '"area": ' + "9" * 5000, 1)),
     "COCO JSON: not JSON (a number of more than 4300 digits)"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in BAD_COCO], ids=[c[0] for c in BAD_COCO])
def test_a_bad_coco_file_is_refused_whole_and_stores_nothing(tmp_path, stocked, change, message):
    coco, folder = coco_folder(tmp_path)
    if isinstance(change, tuple):
        text = change[1](json.dumps(coco)).encode()
    else:
        text = json.dumps(change(coco)).encode()  # Python writes NaN / Infinity as JSON does not
    before = snapshot(stocked)
    with pytest.raises(ValueError) as caught:
        import_coco(stocked, text, folder)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert snapshot(stocked) == before and stocked.count_images() == 1


def test_the_same_bad_file_from_disk_and_as_a_dict(tmp_path, stocked):
    coco, folder = coco_folder(tmp_path)
    coco["images"].append({**coco["images"][1], "file_name": "other.png"})
    (tmp_path / "dup.json").write_text(json.dumps(coco))
    before = snapshot(stocked)
    for source in (tmp_path / "dup.json", coco):
        with pytest.raises(ValueError, match=r"image ids used more than once: \[101\]"):
            import_coco(stocked, source, folder)
    assert snapshot(stocked) == before


def test_a_valid_file_is_stored_in_one_go_with_one_activity_line(tmp_path, stocked):
    coco, folder = coco_folder(tmp_path)
    report = import_coco(stocked, json.dumps(coco).encode(), folder, split="train")
    assert (report.added, report.boxes, report.skipped, report.nothing_added) == (5, 5, [], False)
    assert stocked.count_images() == 6
    imports = [a for a in stocked.activity() if a["action"] == "import"]
    assert len(imports) == 1 and imports[0]["detail"] == "5 images added, 0 already stored"
    assert not list((stocked.data_dir / "tmp").rglob("*.png"))  # no staged copies left


def test_per_image_problems_skip_that_image_and_say_why(tmp_path, stocked):
    coco, folder = coco_folder(tmp_path)
    coco["images"][0]["width"] = 640  # the file is 64x64: its boxes were drawn on another picture
    (folder / "1.png").write_bytes(png(1, 40, 64))  # the file says 64x64, the picture is 40 px wide
    (folder / "2.png").write_bytes(png(2, 16, 16))  # too small to train on (the COCO entry says 64x64)
    coco["images"][2].update(width=16, height=16)
    coco["annotations"][2]["bbox"] = [1, 1, 5, 5]
    (folder / "3.png").write_bytes(png(0))  # the very picture of 0.png, with its own boxes
    (folder / "4.png").unlink()
    report = import_coco(stocked, json.dumps(coco).encode(), folder)
    reasons = dict(report.skipped)
    assert reasons == {
        "0.png": "image 0.png: the file is 64x64 px, not the 640x64 its boxes were drawn on",
        "1.png": "image 1.png: the file is 40x64 px, not the 64x64 its boxes were drawn on",
        "2.png": "image 2.png: 16x16 px is too small; each side needs at least 32 px (the detectors' smallest box "
                 "is ~30 px)",
        "4.png": "image file not found",
    }
    assert report.added == 1 and stocked.count_images() == 2  # 3.png, whose twin 0.png was skipped


def test_the_same_picture_twice_with_boxes_is_not_merged_silently(tmp_path, stocked):
    coco, folder = coco_folder(tmp_path, n=2)
    (folder / "1.png").write_bytes(png(0))  # identical bytes to 0.png, other boxes
    report = import_coco(stocked, json.dumps(coco).encode(), folder)
    assert report.added == 1 and report.skipped == [
        ("1.png", "image 1.png: the same picture (identical bytes) as 0.png earlier in this import; one of them has "
                  "boxes, which would be lost")]


def test_exif_turned_picture_is_named_in_the_reason(tmp_path, stocked):
    coco, folder = coco_folder(tmp_path, n=1)
    turned = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = turned.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees; a phone's portrait photo stored sideways
    buf = io.BytesIO()
    turned.save(buf, "JPEG", exif=exif)
    (folder / "0.png").write_bytes(buf.getvalue())
    coco["images"][0].update(width=64, height=48)  # the stored pixel grid; we read it turned: 48x64
    report = import_coco(stocked, json.dumps(coco).encode(), folder)
    assert report.skipped == [("0.png", "image 0.png: the file is 48x64 px, not the 64x48 its boxes were drawn on "
                                        "(turned by its EXIF orientation?)")]


def test_an_error_while_reading_stores_none_of_the_images_before_it(tmp_path, stocked):
    """An unexpected error (a file that vanished while the upload was read) after three good
    files: none of them is stored, no image file is left behind."""
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for i, path in enumerate(paths[:3]):
        path.write_bytes(png(i))

    def files():
        for path in paths:
            yield path.name, path.read_bytes()  # the fourth is not there

    before = snapshot(stocked)
    with pytest.raises(FileNotFoundError):
        import_images(stocked, files())
    assert snapshot(stocked) == before


def test_a_row_the_database_refuses_stores_none_of_the_batch(tmp_path, stocked):
    """The failure happens inside the one transaction (a trigger aborts the third insert): the two
    rows before it roll back and the two files moved into images/ are removed again."""
    with sqlite3.connect(stocked.db_path) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON images WHEN NEW.original_name = '2.png' "
                     "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    coco, folder = coco_folder(tmp_path)
    before = snapshot(stocked)
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        import_coco(stocked, json.dumps(coco).encode(), folder)
    assert snapshot(stocked) == before


def test_only_refusals_means_nothing_added(stocked):
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, "GIF")
    before = snapshot(stocked)
    report = import_images(stocked, [("cow.png", gif.getvalue()), ("dot.png", png(1, 1, 1))])
    assert report.nothing_added and len(report.skipped) == 2 and report.already_present == 0
    assert snapshot(stocked)[0] == before[0] and snapshot(stocked)[1]["images"] == before[1]["images"]
    again = import_images(stocked, [("old.png", png(999))])  # found, not added: still nothing added
    assert again.nothing_added and again.already_present == 1 and not again.skipped


@pytest.mark.parametrize("width, height, fragment", [
    (1, 1, "image x.png: 1x1 px is too small; each side needs at least 32 px"),
    (60000, 1, "image x.png: 60000x1 px is too small; each side needs at least 32 px"),
    (31, 64, "image x.png: 31x64 px is too small"),
    (672, 32, "image x.png: 672x32 px is 21:1; at most 20:1 is accepted"),
    (32, 1000, "image x.png: 32x1000 px is 31:1; at most 20:1 is accepted"),
])
def test_add_image_refuses_what_training_cannot_use(stocked, width, height, fragment):
    before = snapshot(stocked)
    with pytest.raises(ValueError, match=fragment):
        stocked.add_image(png(3, width, height), name="x.png")
    with pytest.raises(ValueError, match=fragment.replace("x.png", "frame")):
        stocked.add_image(np.zeros((height, width, 3), np.uint8), name="frame", array_format="JPEG")  # a video frame
    assert snapshot(stocked) == before


@pytest.mark.parametrize("width, height", [(32, 32), (640, 32), (32, 640)])
def test_add_image_accepts_the_limits(stocked, width, height):
    record, created = stocked.add_image(png(4, width, height), name="edge.png")
    assert created and (record.width, record.height) == (width, height)


@pytest.mark.parametrize("fmt, save, message", [
    ("GIF", {}, "image cow.png: a GIF file (whatever its name says); cowdetect stores JPEG, PNG, WEBP and BMP"),
    ("TIFF", {}, "image cow.png: a TIFF file (whatever its name says)"),
    ("MPO", {"save_all": True}, None),  # how Pillow reads many camera JPEGs: stored, as .jpg
    ("BMP", {}, None),
])
def test_the_decoded_format_decides_not_the_name(stocked, fmt, save, message):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, fmt, **save)
    if message is not None:
        with pytest.raises(ValueError, match=re.escape(message)):
            stocked.add_image(buf.getvalue(), name="cow.png")
        assert stocked.count_images() == 1
        return
    record, created = stocked.add_image(buf.getvalue(), name="cow.png")
    assert created and record.path.suffix == {"MPO": ".jpg", "BMP": ".bmp"}[fmt]


def test_a_name_too_long_for_a_file_system_is_one_clear_line(stocked):
    report = import_images(stocked, [("n" * 5000 + ".png", png(5))])
    assert report.skipped == [("n" * 120 + "… (5004 characters)",
                               "image name " + "n" * 60 + "… (5004 characters) is too long: 5004 bytes in one name, "
                               "file systems allow 255")]
    with pytest.raises(ValueError, match=r"image n+… \(5004 characters\): cannot be read"):
        stocked.add_image(Path("n" * 5000 + ".png"))  # a path: the OS refuses it (ENAMETOOLONG), we say so


def old_tiny_image(store: Store) -> int:
    """A 1x1 labeled image stored the way an older cowdetect (before the size check) did: file and row."""
    data = png(7, 1, 1)
    rel = Path("images") / "aa" / "tiny.png"
    store.inside(rel).parent.mkdir(parents=True, exist_ok=True)
    store.inside(rel).write_bytes(data)
    with store.connect() as conn:
        cur = conn.execute("INSERT INTO images(sha256, file, original_name, width, height, split, labeled) "
                           "VALUES ('old-tiny', ?, 'tiny.png', 1, 1, 'train', 1)", (rel.as_posix(),))
        conn.execute("INSERT INTO boxes(image_id, class_name, x_min, y_min, x_max, y_max) "
                     "VALUES (?, 'cow', 0, 0, 1, 1)", (cur.lastrowid,))
        return int(cur.lastrowid)


def test_training_on_an_old_tiny_image_fails_at_once_in_one_line(stocked):
    """Before: SSD's scale jitter (torchvision's RandomIoUCrop) died on it with 'ZeroDivisionError:
    division by zero' whenever the image came up. Now the run refuses to start, naming the image."""
    from conftest import new_tiny_box

    tiny_id = old_tiny_image(stocked)
    dataset = stocked.dataset("train")
    expected = (f"image {tiny_id}: 1x1 px is too small; each side needs at least 32 px (the detectors' smallest box is "
                f"~30 px); remove it from the data (delete it, or move it to 'unassigned')")
    with pytest.raises(ValueError) as caught:
        new_tiny_box().train(dataset, iterations=1, batch_size=2)
    assert str(caught.value) == expected
    with pytest.raises(ValueError, match="1x1 px is too small"):  # wherever it is read
        dataset[1].load()


def test_training_on_a_tiny_array_fails_in_one_line_not_in_torchvision():
    from conftest import new_tiny_box

    rgb = np.zeros((3, 3, 3), np.uint8)
    dataset = LabeledDataset.from_lists([rgb, rgb], [[[0, 0, 2, 2]], [[0, 0, 2, 2]]], [["cow"], ["cow"]])
    with pytest.raises(ValueError, match=r"^image [01]: 3x3 px is too small; .*remove it from the data"):
        new_tiny_box().train(dataset, iterations=1, batch_size=2)


def test_a_staging_folder_left_by_a_killed_import_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from cowdetect.store import Store
    store = Store(tmp_path / "data")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = store.inside("tmp") / f"import-{int(dead.stdout)}-abc"
    left.mkdir(parents=True)
    (left / "half.png").write_bytes(b"staged, never committed")
    record, created = store.add_image(np.full((40, 40, 3), 90, np.uint8), name="next.png")
    assert created and not left.exists()


@pytest.mark.parametrize("name", ["x" * 65, "cow\nherd", "<b>cow</b>\x00"])
def test_a_coco_category_name_follows_the_class_name_rule(tmp_path, name):
    from cowdetect.formats import import_coco
    from cowdetect.store import Store
    store = Store(tmp_path / "data")
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": name}]}
    with pytest.raises(ValueError, match="category 1: name must be a class name"):
        import_coco(store, coco, {}, category=None)
    assert store.classes() == ("cow",)
