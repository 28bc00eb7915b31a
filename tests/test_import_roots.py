"""Server folders an import may read: only inside the roots an admin listed, and every refusal in
the same words (no answer tells whether another server path exists)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cowdetect.formats import import_coco
from cowdetect.images import encode_image
from cowdetect.import_roots import NOT_ALLOWED, FolderImages, allowed_dataset, allowed_folder, import_roots


@pytest.fixture
def tree(tmp_path):
    """root/ (allowed) with coco/a.png and links out; secret/ beside it (not allowed)."""
    root, secret = tmp_path / "root", tmp_path / "secret"
    (root / "coco" / "nested").mkdir(parents=True)
    secret.mkdir()
    (root / "coco" / "a.png").write_bytes(b"inside")
    (root / "coco" / "nested" / "b.png").write_bytes(b"nested")
    (secret / "s.png").write_bytes(b"secret")
    (root / "out").symlink_to(secret, target_is_directory=True)          # a folder link out of the root
    (root / "coco" / "leak.png").symlink_to(secret / "s.png")             # a file link out of the folder
    (root / "coco" / "up").symlink_to(root, target_is_directory=True)    # a link up, still in the root
    (root / "locked").mkdir()  # reads as unreadable (see test_every_refusal_reads_the_same)
    return tmp_path


def test_roots_come_from_the_environment(tree, monkeypatch):
    monkeypatch.setenv("COWDETECT_IMPORT_ROOTS", f"{tree / 'root'}{os.pathsep}{os.pathsep}relative/dir")
    assert import_roots() == [(tree / "root").resolve()]  # empty and relative entries are ignored
    monkeypatch.delenv("COWDETECT_IMPORT_ROOTS")
    assert import_roots() == []


@pytest.mark.parametrize("path", ["root", "root/coco", "root/coco/nested", "root/coco/../coco", "root/coco/up"])
def test_folders_inside_a_root_are_allowed(tree, path):
    assert allowed_folder(str(tree / path), [(tree / "root").resolve()]) == (tree / path).resolve()


@pytest.mark.parametrize("path", [
    "secret",                   # outside
    "root/../secret",           # '..' out of the root
    "root/coco/../../secret",   # '..' deeper
    "root/out",                 # a symlink out of the root
    "root/no-such-folder",      # missing, inside the root
    "no-such-folder",           # missing, outside
    "root/coco/a.png",          # a file, not a folder
    "root/locked",              # unreadable
    "root/coco\0x",             # a NUL byte
    "",                         # nothing (the current folder)
])
def test_every_refusal_reads_the_same(tree, path, monkeypatch):
    real_access = os.access  # root may read any folder: "locked" is made unreadable for everyone
    monkeypatch.setattr(os, "access", lambda p, mode: "locked" not in str(p) and real_access(p, mode))
    with pytest.raises(ValueError) as err:
        allowed_folder(str(tree / path) if path else path, [(tree / "root").resolve()])
    assert str(err.value) == NOT_ALLOWED


def test_no_roots_allow_nothing(tree):
    with pytest.raises(ValueError, match="not inside an import folder the admin allowed"):
        allowed_folder(str(tree / "root"), [])


def test_folder_images_read_only_inside_the_folder(tree):
    images = FolderImages(tree / "root" / "coco", [(tree / "root").resolve()])
    assert images.get("a.png") == b"inside"
    assert images.get("nested/b.png") == b"nested"
    assert images.get("up/coco/a.png") == b"inside"  # a link that stays in the folder is followed
    for name in ["leak.png", "../../secret/s.png", str(tree / "secret" / "s.png"), "missing.png", "nested", "a\0"]:
        assert images.get(name) is None, name  # outside, missing or not a file: all alike


def test_folder_images_check_the_folder_first(tree):
    with pytest.raises(ValueError, match="admin allowed"):
        FolderImages(tree / "secret", [(tree / "root").resolve()])


def test_coco_import_skips_names_that_leave_the_folder(tree, store):
    png = encode_image(np.full((40, 60, 3), 200, np.uint8), "PNG")
    (tree / "root" / "coco" / "a.png").write_bytes(png)
    (tree / "secret" / "s.png").write_bytes(png)
    coco = {"images": [{"id": i, "file_name": n, "width": 60, "height": 40}
                       for i, n in enumerate(["a.png", "leak.png", "../../secret/s.png", "missing.png"])],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in range(4)],
            "categories": [{"id": 1, "name": "cow"}]}
    report = import_coco(store, json.dumps(coco).encode(), FolderImages(tree / "root" / "coco",
                                                                        [(tree / "root").resolve()]))
    assert report.added == 1
    why = dict(report.skipped)
    assert why["leak.png"] == why["missing.png"] == "image file not found"  # out of the folder reads as missing
    assert "../../secret/s.png" in why


def test_deep_lake_sources(tree):
    roots = [(tree / "root").resolve()]
    assert allowed_dataset("hub://activeloop/coco-train", roots) == "hub://activeloop/coco-train"
    assert allowed_dataset(f"file://{tree / 'root' / 'coco'}", roots) == str((tree / "root" / "coco").resolve())
    for source in [str(tree / "secret"), f"file://{tree / 'secret'}", str(tree / "root" / "missing")]:
        with pytest.raises(ValueError) as err:
            allowed_dataset(source, roots)
        assert str(err.value) == NOT_ALLOWED, source
    with pytest.raises(ValueError, match="got a s3:// URL"):
        allowed_dataset("s3://bucket/ds", roots)
