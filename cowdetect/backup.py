"""Writing a backup of a data folder: one .tar[.gz] made while the app and jobs run.

What a backup holds (paths relative to the data folder, as in the archive)::

    cowdetect.sqlite     a copy made with SQLite's online backup API (a snapshot while others write)
    images/ models/ videos/   the files the COPIED database references (so rows and files agree)
    runs/run-<id>/       the folders of the runs in the copy: checkpoints, logs, outputs
    weights/             converted pretrained weights (``weights=False`` leaves them out)
    secret.key           the session secret (restored owner-only, 0600)
    manifest.json        format, schema version, time, rows per table, sha256 and size of every file

Left out: ``cache/`` and ``tmp/`` (rebuilt on demand), the database's -wal/-shm files and lock,
files no row references. Right after the database is copied every file to archive is hard-linked
into a scratch folder, so a checkpoint replaced or an image deleted while the archive is written
is archived as the copy knew it. The archive holds password hashes and the session secret: it is
written owner-only (0600), and so is the database copy. Scratch folders and partial archives are
named with the process id, so a backup killed midway (kill -9) is cleaned up by the next one.

This module also holds what a restore shares with it: the archive's layout (:data:`FORMAT`,
:data:`MANIFEST`, :data:`FOLDERS`), :class:`BackupReport`, and the reading of file names and
tables both sides check. Restoring a backup is :mod:`cowdetect.restore`, which imports from here
(never the other way).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3  # the backup API copies the database as a whole, which the store's per-call connections do not
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from .accounts import SECRET_FILE
from .files import remove_abandoned
from .store import DB_NAME, Store

FORMAT = "cowdetect-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODES = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar": "w"}  # suffix -> tarfile write mode
# which columns of the database name files (relative to the data folder)
REFERENCES = {"images": ("file",), "models": ("checkpoint",), "runs": ("checkpoint",), "videos": ("file", "gt_file")}
# the folders a backup holds (with cowdetect.sqlite, secret.key and manifest.json): a restore writes nothing else
FOLDERS = ("images", "models", "runs", "videos", "weights")


@dataclass
class BackupReport:
    """What a backup or restore holds: rows per table, files and bytes.

    ``path``: the archive (backup) or the data folder (restore); ``bytes``: the files' total size,
    uncompressed; ``missing``: files rows referenced that were gone when the backup was made;
    ``at``: when the backup was made (UTC, ISO 8601).
    """

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    at: str = ""
    missing: list[str] = field(default_factory=list)
    schema_version: int = 0
    archive_bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.rows, "files": self.files, "bytes": self.bytes, "at": self.at,
                "missing": self.missing, "schema_version": self.schema_version,
                "archive_bytes": self.archive_bytes, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        line = (f"{self.path}: {self.files} files ({self.bytes / 1e6:.1f} MB), {sum(self.rows.values())} rows "
                f"in {len(self.rows)} tables; backup of {self.at}")
        if self.missing:
            line += f"; {len(self.missing)} referenced files were missing, e.g. {self.missing[0]}"
        return line


def backup(store: Store, out: str | Path, weights: bool = True) -> BackupReport:
    """Write the data folder into ``out`` (.tar, .tar.gz or .tgz; must not exist yet), also while
    the app, importers and jobs write. Admin only. Records an activity line "backup" and the setting
    ``last_backup``: JSON ``{"at": UTC ISO time, "archive": file name, "path", "files", "bytes",
    "rows": {table: count}, "missing": count}``. ``weights``: include converted pretrained weights.

    Raises:
        ValueError: a bad ``out`` (exists, wrong suffix, no such folder, inside the data folder).
        PermissionDenied: the store's user is not an admin.
    """
    store.require("backup")
    out = check_output(store.data_dir, out)
    started, at = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    folder, prefix = scratch_folder(store.data_dir)
    with tempfile.TemporaryDirectory(dir=folder, prefix=f"{prefix}{os.getpid()}-") as tmp:
        db = Path(tmp) / DB_NAME
        # Writers wait (a second or two) from the copy until every file it names is hard-linked:
        # deleting an image or a model happens under this lock, so none can go in between.
        with store.write_lock():
            copy_database(store.db_path, db)
            snap = read_copy(db)
            missing = list(snap.unsafe)
            frozen = freeze(store.data_dir, snap.files + extra_files(store.data_dir, snap.run_ids, weights),
                            Path(tmp) / "files", missing)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": snap.schema,
                    "created_at": at, "rows": snap.rows, "missing": missing}
        files = write_archive(out, {DB_NAME: db, **frozen}, manifest)
    rows = snap.rows
    report = BackupReport(out, rows, len(files), sum(f["bytes"] for f in files.values()), at, missing, snap.schema,
                          out.stat().st_size, time.monotonic() - started)
    with store.connect() as conn:  # the setting and its activity line together
        store.set_setting("last_backup", json.dumps({"at": at, "archive": out.name, "path": str(out),
                                                     "files": report.files, "bytes": report.bytes, "rows": rows,
                                                     "missing": len(missing)}), conn)
        store.record("backup", out.name, f"{report.files} files, {sum(rows.values())} rows", conn)
    return report


def check_output(data_dir: Path, out: str | Path) -> Path:
    """``out`` as an absolute path, or ValueError: it exists, has another suffix than .tar / .tar.gz /
    .tgz, its folder does not exist, or it lies inside the data folder (it would back itself up)."""
    out = Path(out).expanduser().absolute()
    if _suffix(out) is None:
        raise ValueError(f"backup: {out.name} must end in .tar, .tar.gz or .tgz")
    if not out.parent.is_dir():
        raise ValueError(f"backup: folder {out.parent} does not exist")
    if out.exists() or out.is_symlink():
        raise ValueError(f"backup: {out} exists already; a backup never overwrites, choose a new name")
    resolved = out.parent.resolve() / out.name
    if data_dir == resolved.parent or data_dir in resolved.parents:
        raise ValueError(f"backup: {out} is inside the data folder {data_dir}; write it elsewhere")
    return out


def _suffix(path: Path) -> str | None:
    return next((s for s in MODES if path.name.lower().endswith(s) and len(path.name) > len(s)), None)


def scratch_folder(data_dir: Path) -> tuple[Path, str]:
    """Where a backup's scratch folder goes and how its name starts (the pid follows): the data
    folder's tmp/ (same disk: files can be hard-linked), else the system's temp. Scratch folders of
    backups whose process is gone (kill -9) go first: each holds a copy of the database with the
    password hashes and hard links that pin the disk space of files deleted since."""
    tmp = data_dir / "tmp"
    try:
        tmp.mkdir(exist_ok=True)
        writable = os.access(tmp, os.W_OK)
    except OSError:
        writable = False
    folder, prefix = (tmp, "backup-") if writable else (Path(tempfile.gettempdir()), "cowdetect-backup-")
    remove_abandoned(folder, prefix)
    return folder, prefix


def copy_database(db_path: Path, dest: Path) -> None:
    """Copy the live database into ``dest`` with SQLite's backup API, in one step: it reads one
    snapshot (WAL: writers go on meanwhile), so the copy is a state the database really had."""
    # owner-only before SQLite writes a byte (its journal gets the same mode): the copy holds password hashes
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source, copy = sqlite3.connect(db_path, timeout=30), sqlite3.connect(dest)
    try:
        source.backup(copy)
        problem = copy.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise ValueError(f"backup: the database copy fails SQLite's check ({problem}); nothing written")
    finally:
        copy.close()
        source.close()


@dataclass
class Snapshot:
    """What the copied database says: rows per table, schema version, the files its rows reference
    (relative paths), references that are not safe relative paths, and its runs' ids."""

    rows: dict[str, int]
    schema: int
    files: list[str]
    unsafe: list[str]
    run_ids: list[int]


def read_copy(db: Path) -> Snapshot:
    """Read the copied database (never the live one: its rows may already be newer)."""
    conn = sqlite3.connect(db)
    try:
        names: set[str] = set()
        for table, columns in REFERENCES.items():
            for column in columns:
                names.update(r[0] for r in conn.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL "
                                                        f"AND {column} != ''"))
        unsafe = sorted(n for n in names if not safe_name(n))
        return Snapshot(table_counts(conn), int(conn.execute("PRAGMA user_version").fetchone()[0]),
                        sorted(names - set(unsafe)), unsafe, [int(r[0]) for r in conn.execute("SELECT id FROM runs")])
    finally:
        conn.close()


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows in each table of a database (SQLite's own tables left out)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}


def safe_name(name: str) -> bool:
    """Relative, no '..', and written the one way (no './', '//' or trailing '/': two spellings of
    one path could pass as two members)."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name \
        and "\x00" not in name and path.as_posix() == name


def extra_files(data_dir: Path, run_ids: list[int], weights: bool) -> list[str]:
    """What a restore needs beyond the referenced files: run folders, weights/ and secret.key."""
    folders = [data_dir / "runs" / f"run-{i}" for i in run_ids] + ([data_dir / "weights"] if weights else [])
    found = [p for folder in folders for p in walk(folder)]
    if (data_dir / SECRET_FILE).is_file():
        found.append(data_dir / SECRET_FILE)
    return [p.relative_to(data_dir).as_posix() for p in found]


def walk(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder`` (links are not followed: they could lead out of the data folder)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            path = Path(root) / name
            if not path.is_symlink() and path.is_file():
                yield path


def freeze(data_dir: Path, names: list[str], into: Path, missing: list[str]) -> dict[str, Path]:
    """Hard-link each file into ``into`` right after the database copy: a file replaced (a newer
    checkpoint) or deleted (an image) while the archive is written is archived as it was. Where a
    link cannot be made (another disk) the live file is read. Gone files are added to ``missing``."""
    frozen: dict[str, Path] = {}
    for name in dict.fromkeys(names):  # once each, in order
        source, link = data_dir / name, into / name
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, link)
            frozen[name] = link
        except FileNotFoundError:
            missing.append(name)
        except OSError:
            frozen[name] = source
    return frozen


def write_archive(out: Path, files: dict[str, Path], manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Write ``files`` (archive name -> path) and then the manifest (with each file's sha256 and
    size, as read into the archive) to ``out`` via ``out.<pid>.partial``; returns the manifest's files.
    Partial archives of earlier backups to ``out`` whose process is gone (kill -9) are removed first."""
    remove_abandoned(out.parent, f"{out.name}.", ".partial")
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds password hashes
    except FileExistsError:
        raise ValueError(f"backup: {partial} exists: another backup to {out.name} is running or was "
                         f"interrupted; remove it or choose another name") from None
    except PermissionError:
        raise PermissionError(f"backup: cannot write in {out.parent}: permission denied") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            entries = _fill(raw, _suffix(out) or ".tar", files, manifest)
            raw.flush()
            os.fsync(raw.fileno())
        _publish(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return entries


def _fill(raw: BinaryIO, suffix: str, files: dict[str, Path], manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    # gzip level 6: images and checkpoints hardly compress, level 9 only costs time
    options = {"compresslevel": 6} if MODES[suffix] == "w:gz" else {}
    with tarfile.open(fileobj=raw, mode=MODES[suffix], **options) as tar:  # type: ignore[call-overload]
        for name, path in files.items():
            entry = add_file(tar, name, path)
            if entry is None:
                manifest["missing"].append(name)
            else:
                entries[name] = entry
        data = json.dumps({**manifest, "files": entries}, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return entries


def add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any] | None:
    """Add one file, hashing the very bytes archived; None when it is gone. A file that grows
    meanwhile (a log) is archived up to the size it had when opened."""
    try:
        source = open(path, "rb")
    except FileNotFoundError:
        return None
    with source:
        stat = os.fstat(source.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = stat.st_size, stat.st_mode & 0o777, int(stat.st_mtime)
        reader = _Hashing(source)
        tar.addfile(info, reader)
    return {"sha256": reader.hash.hexdigest(), "bytes": stat.st_size}


def _publish(partial: Path, out: Path) -> None:
    """Give ``partial`` its final name without ever replacing a file that appeared there meanwhile."""
    try:
        os.link(partial, out)
    except FileExistsError:
        raise ValueError(f"backup: {out} appeared while the backup was written; kept it, backup removed") from None
    except OSError:  # no hard links on this file system
        if out.exists():
            raise ValueError(f"backup: {out} appeared while the backup was written; kept it, backup removed")
        os.replace(partial, out)
        return
    partial.unlink()


class _Hashing:
    """A file read through sha256 (tarfile reads exactly the size it was given)."""

    def __init__(self, source: Any) -> None:
        self.source, self.hash = source, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hash.update(data)
        return data
