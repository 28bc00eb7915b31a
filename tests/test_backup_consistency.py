"""A deletion racing a backup: the backup holds the write lock from its database copy until every
file that copy names is hard-linked, so the image it copied is archived whole."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

import cowdetect.backup as backup_module
from cowdetect.store import Store


def test_an_image_deleted_right_after_the_database_copy_is_still_archived(tmp_path: Path, monkeypatch):
    from cowdetect.backup import backup
    from cowdetect.restore import restore

    store = Store(tmp_path / "data")
    record, _ = store.add_image(np.full((40, 40, 3), 120, np.uint8), name="cow.png")
    real_copy = backup_module.copy_database
    deleter: list[threading.Thread] = []

    def copy_then_delete(db_path: Path, dest: Path) -> None:
        real_copy(db_path, dest)  # the copy now names the image ...
        deleter.append(threading.Thread(target=Store(tmp_path / "data").delete_image, args=(record.id,)))
        deleter[0].start()  # ... and another writer deletes it at once
        # Without the lock the deletion finishes well inside this wait, before the file is linked;
        # with it the deleter waits for the backup (this join returns after its timeout).
        deleter[0].join(timeout=2.0)

    monkeypatch.setattr(backup_module, "copy_database", copy_then_delete)
    report = backup(store, tmp_path / "b.tar")
    deleter[0].join()
    assert report.missing == [] and report.rows["images"] == 1
    restored = Store(restore(tmp_path / "b.tar", tmp_path / "restored").path)
    assert [r.id for r in restored.images()] == [record.id] and restored.images()[0].path.is_file()
    assert store.images() == []  # the deletion itself went through once the backup let go
