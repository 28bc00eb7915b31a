"""Import and export: image files and zips (with their traps), COCO JSON (round trip, pycocotools,
bad files), YOLO layout, Deep Lake (a local dataset with COCO's columns; offline failure)."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import yaml

from cowdetect.cli import main
from cowdetect.formats import (MAX_RATIO, export_yolo, import_coco, import_deeplake, import_images,
                               write_coco)
from cowdetect.images import encode_image
from cowdetect.store import Store


def jpeg(seed: int, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "JPEG", 90)


def zipped(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def snapshot(store: Store):
    return [(r.id, r.sha256, r.split, r.labeled) for r in store.images()], \
        [store.boxes(r.id).xyxy.tolist() for r in store.images()]


def test_upload_files_and_zip_with_every_trap(store):
    png = encode_image(np.full((40, 50, 3), 90, np.uint8), "PNG")
    webp_buf = io.BytesIO()
    from PIL import Image
    Image.fromarray(np.full((40, 40, 3), 10, np.uint8)).save(webp_buf, "WEBP")
    bmp_buf = io.BytesIO()
    Image.fromarray(np.full((32, 48, 3), 200, np.uint8)).save(bmp_buf, "BMP")
    gif_buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 70, np.uint8)).save(gif_buf, "GIF")
    bomb = zipped({"bomb.jpg": b"\0" * (MAX_RATIO * 1000 * 20)}, zipfile.ZIP_DEFLATED)
    archive = zipped({"cows/a.jpg": jpeg(1), "cows/b.png": png, "../evil.jpg": jpeg(2), "/etc/abs.jpg": jpeg(3),
                      "notes.txt": b"hello", "inner.zip": zipped({"x.jpg": jpeg(4)}), "fake.jpg": b"not a jpeg",
                      "dup.jpg": jpeg(1), "gif.png": gif_buf.getvalue(), "tiny.png": jpeg(5, (1, 1)),
                      "strip.jpg": jpeg(6, (2000, 40)), "c" * 5000 + ".jpg": jpeg(7)})
    report = import_images(store, [("one.jpg", jpeg(1)), ("w.webp", webp_buf.getvalue()), ("b.bmp", bmp_buf.getvalue()),
                                   ("photos.zip", archive), ("bomb.zip", bomb), ("broken.zip", b"PK\3\4 nope"),
                                   ("movie.mp4", b"..."), ("d" * 5000 + ".png", jpeg(8))], split="train")
    reasons = dict(report.skipped)
    assert report.added == 4 and report.already_present == 2  # one.jpg, webp, bmp, b.png; a.jpg and dup.jpg again
    assert "'..'" in reasons["photos.zip/../evil.jpg"] and "absolute" in reasons["photos.zip//etc/abs.jpg"]
    assert "not an image file" in reasons["photos.zip/notes.txt"]
    assert "zip inside a zip" in reasons["photos.zip/inner.zip"]
    assert "fake.jpg: not an image file" in reasons["photos.zip/fake.jpg"]  # the file and why
    assert "zip bomb" in reasons["bomb.zip/bomb.jpg"]
    assert "not a valid zip" in reasons["broken.zip"] and "not an image or zip" in reasons["movie.mp4"]
    # the decoded format decides, not the name; sizes training cannot use; names no file system allows
    assert reasons["photos.zip/gif.png"] == ("image gif.png: a GIF file (whatever its name says); cowdetect stores "
                                             "JPEG, PNG, WEBP and BMP images — convert it first")
    assert reasons["photos.zip/tiny.png"].startswith("image tiny.png: 1x1 px is too small; each side needs at least 32")
    assert reasons["photos.zip/strip.jpg"].startswith("image strip.jpg: 2000x40 px is 50:1; at most 20:1")
    long_names = {n: r for n, r in reasons.items() if "characters)" in n}
    assert len(long_names) == 2 and all(len(n) < 200 and "\n" not in r and len(r) < 200 for n, r in long_names.items())
    assert all("is too long: 5004 bytes in one name, file systems allow 255" in r for r in long_names.values())
    assert store.count_images("train") == 4 and not any((store.data_dir.parent / "evil.jpg").exists() for _ in [0])


def _coco(tmp_path, n=3, extra_annotations=(), extra_images=()):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        name = f"{100 + i:012d}.jpg"
        (folder / name).write_bytes(jpeg(10 + i, (80, 60)))
        images.append({"id": 100 + i, "file_name": name, "width": 80, "height": 60})
        annotations.append({"id": 1000 + i, "image_id": 100 + i, "category_id": 21,
                            "bbox": [1.25 + i, 2.5, 30.75, 20.1], "area": 618.1, "iscrowd": 0})
        annotations.append({"id": 2000 + i, "image_id": 100 + i, "category_id": 1, "bbox": [40, 10, 10, 30],
                            "area": 300, "iscrowd": 0})
    images.append({"id": 999, "file_name": "999.jpg", "width": 80, "height": 60})  # a person only
    (folder / "999.jpg").write_bytes(jpeg(99, (80, 60)))
    annotations.append({"id": 3000, "image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    coco = {"images": images + list(extra_images), "annotations": annotations + list(extra_annotations),
            "categories": [{"id": 1, "name": "person"}, {"id": 21, "name": "cow"}, {"id": 18, "name": "dog"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    return path, folder, coco


def test_coco_round_trip_and_pycocotools(tmp_path, store):
    from pycocotools.coco import COCO

    path, folder, original = _coco(tmp_path)
    report = import_coco(store, path, folder, category="cow", split="train")
    assert report.added == 3 and report.boxes == 3 and not report.skipped
    out = tmp_path / "export.json"
    assert write_coco(store, out, split="train") == {"images": 3, "annotations": 3}
    exported = json.loads(out.read_text())
    stored_name = {store.image(i["id"]).original_name: i["id"] for i in exported["images"]}
    cow_anns = {a["image_id"]: a["bbox"] for a in original["annotations"] if a["category_id"] == 21}
    with_cows = {im["file_name"]: im["id"] for im in original["images"] if im["id"] in cow_anns}
    assert set(stored_name) == set(with_cows) and len(with_cows) == 3  # the person-only image is not imported
    for name, coco_id in with_cows.items():
        ours = [a["bbox"] for a in exported["annotations"] if a["image_id"] == stored_name[name]]
        assert ours == [cow_anns[coco_id]]  # exactly, ids mapped through the file name
    assert [c["name"] for c in exported["categories"]] == ["cow"]
    api = COCO(str(out))
    assert len(api.getImgIds()) == 3 and len(api.getAnnIds()) == 3
    # importing the same file again adds nothing and changes nothing
    before = snapshot(store)
    again = import_coco(store, path, folder, category="cow", split="val")
    assert again.added == 0 and again.already_present == 3 and snapshot(store) == before


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected an object"),
    (b'{"images": [], "annotations": []}', "missing or not a list: \\['categories'\\]"),
])
def test_coco_files_that_are_not_coco(tmp_path, store, content, message):
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        import_coco(store, tmp_path / "bad.json", tmp_path)
    assert store.images() == []


def test_coco_bad_boxes_ids_and_names(tmp_path, store):
    make = lambda i, **kw: {"id": 5000 + i, "image_id": 100 + i, "category_id": 21, "iscrowd": 0, **kw}  # noqa: E731
    path, folder, _ = _coco(tmp_path, n=5, extra_annotations=[
        make(0, bbox=[70, 10, 40, 20]),            # outside the 80x60 image
        make(1, bbox=[10, 10, -5, 20]),            # negative width
        make(2, bbox=[10, 10, 5, 5], category_id=77),  # unknown category id
        {"id": 6000, "image_id": 4242, "category_id": 21, "bbox": [1, 1, 2, 2]},  # unknown image id
        make(3, bbox=[1, 1, 10, 10], iscrowd=1),   # a crowd region: left out, image kept
    ], extra_images=[{"id": 500, "file_name": "missing.jpg", "width": 80, "height": 60}])
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 7000, "image_id": 500, "category_id": 21, "bbox": [1, 1, 5, 5]})
    path.write_text(json.dumps(data))
    report = import_coco(store, path, folder, category="cow")
    reasons = dict(report.skipped)
    assert "outside the 80x60 image" in reasons["000000000100.jpg"]
    assert "negative or zero size" in reasons["000000000101.jpg"]
    assert "unknown category id 77" in reasons["000000000102.jpg"]
    assert "unknown image id 4242" in reasons["annotation 6000"]
    assert "crowd region" in reasons["annotation 5003"] and "image file not found" in reasons["missing.jpg"]
    assert report.added == 2  # images 103 (its crowd box left out) and 104
    with pytest.raises(ValueError, match="category 'sheep': not in this COCO file"):
        import_coco(store, path, folder, category="sheep")


def test_yolo_layout(tmp_path, demo_store):
    counts = export_yolo(demo_store, tmp_path / "yolo")
    assert counts == {"train": 6, "val": 2, "test": 4}
    config = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert config["names"] == {0: "cow"} and config["train"] == "images/train" and config["val"] == "images/val"
    sample = demo_store.dataset("train")[0]
    record = demo_store.image(sample.image_id)
    lines = (tmp_path / "yolo" / "labels" / "train" / f"{record.id:06d}.txt").read_text().split("\n")
    cls, cx, cy, w, h = (float(v) for v in lines[0].split())
    x1, y1, x2, y2 = sample.boxes.xyxy[0]
    assert cls == 0 and cx == pytest.approx((x1 + x2) / 2 / record.width, abs=1e-6)
    assert h == pytest.approx((y2 - y1) / record.height, abs=1e-6)
    assert (tmp_path / "yolo" / "images" / "train" / f"{record.id:06d}{record.path.suffix}").is_file()


def test_deeplake_local_dataset_with_coco_columns(tmp_path, store):
    import deeplake
    from deeplake import types

    ds = deeplake.create(f"file://{tmp_path / 'dl'}")
    ds.add_column("images", types.Image(dtype="uint8", sample_compression="png"))
    ds.add_column("boxes", types.BoundingBox(format="ltwh", bbox_type="pixel"))
    ds.add_column("categories", types.ClassLabel(types.Array("uint32", 1)))
    ds["categories"].metadata["class_names"] = ["person", "cow", "dog"]
    rng = np.random.default_rng(0)
    rows = [([[5, 6, 20, 10], [30, 5, 10, 10]], [1, 0]), ([[1, 1, 4, 4]], [2]), ([[50, 30, 40, 40]], [1]),
            ([[10, 10, 20, 20]], [1])]
    for boxes, labels in rows:
        ds.append({"images": [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)],
                   "boxes": [np.array(boxes, np.float32)], "categories": [np.array(labels, np.uint32)]})
    ds.append({"images": [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)],  # too small to train on
               "boxes": [np.array([[1, 1, 4, 4]], np.float32)], "categories": [np.array([1], np.uint32)]})
    ds.commit()
    report = import_deeplake(store, f"file://{tmp_path / 'dl'}", category="cow", limit=10, split="train")
    assert report.added == 2 and report.boxes == 2  # row 1 has no cow, row 2's box leaves the 64x48 image
    reasons = dict(report.skipped)
    assert "outside" in reasons[f"file://{tmp_path / 'dl'}[2]"]
    assert reasons[f"file://{tmp_path / 'dl'}[4]"].startswith("image deeplake-0000004.png: 16x16 px is too small")
    assert [a["detail"] for a in store.activity() if a["action"] == "import"] == ["2 images added, 0 already stored, "
                                                                                 "2 skipped"]
    first = store.images()[0]
    assert store.boxes(first.id).xyxy.tolist() == [[5, 6, 25, 16]] and store.boxes(first.id).names == ["cow"]
    with pytest.raises(ValueError, match="not in the dataset's class names"):
        import_deeplake(store, f"file://{tmp_path / 'dl'}", category="sheep")


def test_deeplake_offline_fails_fast_with_a_clear_message(store):
    """No internet here: the real hub:// path must fail at once, not retry (deeplake 3 retried forever)."""
    started = time.monotonic()
    with pytest.raises(ValueError, match="hub://activeloop/coco-train: cannot be opened"):
        import_deeplake(store)
    assert time.monotonic() - started < 30 and store.images() == []


def test_cli_import_export(tmp_path, store, capsys):
    path, folder, _ = _coco(tmp_path)
    d = ["--data-dir", str(store.data_dir)]
    assert main(["import-coco", str(path), str(folder), "--split", "train", "--json", *d]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 3
    assert main(["export-coco", str(tmp_path / "o.json"), "--split", "train", *d]) == 0
    assert len(json.loads((tmp_path / "o.json").read_text())["annotations"]) == 3
    assert main(["export-yolo", str(tmp_path / "y"), *d]) == 0 and (tmp_path / "y" / "data.yaml").is_file()
    (tmp_path / "bad.json").write_text("nope")
    assert main(["import-coco", str(tmp_path / "bad.json"), str(folder), *d]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["import-images", str(folder / "999.jpg"), "--json", *d]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 1


def test_zip_total_unpacked_size_is_capped(store, monkeypatch):
    import cowdetect.formats as formats

    monkeypatch.setattr(formats, "MAX_UNPACKED_BYTES", 2 * len(jpeg(1)) + 10)
    archive = zipped({f"{i}.jpg": jpeg(i) for i in range(5)})
    report = import_images(store, [("many.zip", archive)])
    assert report.added == 2 and "unpacks to more than" in report.skipped[-1][1]
