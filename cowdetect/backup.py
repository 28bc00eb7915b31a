"""Backups of a data folder: one .tar[.gz] made while the app and jobs run, restored into an empty folder.

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

A restore checks everything before anything appears under the target's name. A first pass reads
only the archive's headers and its manifest (wherever it lies: backups write it last): members
(no absolute paths, '..', links or devices), the manifest (ours, a schema this cowdetect reads),
that the members are exactly the manifest's files with its sizes, and that they fit on the disk.
Only then a second pass unpacks, never writing more of a file than the manifest says. Then every
file's sha256, the database's schema (exactly what cowdetect's migrations make: no trigger or view
more), SQLite's integrity and foreign key checks and every table's row count; then it runs the
migrations and renames the unpacked folder into place.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3  # the backup API copies the database as a whole, which the store's per-call connections do not
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from .accounts import SECRET_FILE
from .files import pid_alive, remove_abandoned
from .store import DB_NAME, SCHEMA_VERSION, Store
from .store.schema import MIGRATIONS

FORMAT = "cowdetect-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODES = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar": "w"}  # suffix -> tarfile write mode
# which columns of the database name files (relative to the data folder)
REFERENCES = {"images": ("file",), "models": ("checkpoint",), "runs": ("checkpoint",), "videos": ("file", "gt_file")}
# the folders a backup holds (with cowdetect.sqlite, secret.key and manifest.json): a restore writes nothing else
FOLDERS = ("images", "models", "runs", "videos", "weights")
_CHUNK = 1 << 20
# What a restore accepts before it has unpacked anything. A manifest lists ~160 bytes per file:
# 128 MiB is room for ~800,000 files; the members cap keeps tarfile's list of headers in memory bounded.
MAX_MANIFEST = 128 << 20
MAX_MEMBERS = 1_000_000
# free disk a restore keeps beyond its files (+10%): the migrations and SQLite's journal need room
SPARE = 64 << 20
_BLOCK = 4096


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


# -- backup ---------------------------------------------------------------------------------
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
        unsafe = sorted(n for n in names if not _safe_name(n))
        return Snapshot(table_counts(conn), int(conn.execute("PRAGMA user_version").fetchone()[0]),
                        sorted(names - set(unsafe)), unsafe, [int(r[0]) for r in conn.execute("SELECT id FROM runs")])
    finally:
        conn.close()


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows in each table of a database (SQLite's own tables left out)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}


def extra_files(data_dir: Path, run_ids: list[int], weights: bool) -> list[str]:
    """What a restore needs beyond the referenced files: run folders, weights/ and secret.key."""
    folders = [data_dir / "runs" / f"run-{i}" for i in run_ids] + ([data_dir / "weights"] if weights else [])
    found = [p for folder in folders for p in _walk(folder)]
    if (data_dir / SECRET_FILE).is_file():
        found.append(data_dir / SECRET_FILE)
    return [p.relative_to(data_dir).as_posix() for p in found]


def _walk(folder: Path) -> Iterator[Path]:
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


# -- restore --------------------------------------------------------------------------------
def restore(archive: str | Path, data_dir: str | Path) -> BackupReport:
    """Unpack a backup into ``data_dir``, which must be empty or not exist yet (its parent must).

    Nothing appears under ``data_dir`` unless every check passes: the members are plain files and
    folders with safe names, exactly the manifest's files with its sizes, and fit on the disk (all
    read before anything is written); the manifest is ours and not newer than this cowdetect; each
    file's sha256 matches; the database's schema is exactly what cowdetect's migrations make for
    its version, it passes SQLite's integrity and foreign key checks and each table's row count
    matches. Then the migrations run (an older backup is brought up to date) and the folder is
    renamed into place. What a restore killed midway left beside ``data_dir`` is removed first.

    Raises:
        ValueError: the archive is unreadable, not a cowdetect backup, unsafe or damaged, or does
            not fit on the disk; the target is not empty.
        PermissionError: the target cannot be written.
    """
    started = time.monotonic()
    archive = check_archive(archive)
    target = Path(data_dir).expanduser().absolute()
    remove_abandoned_staging(target)
    target = check_target(target)
    staging = _staging(target)
    try:
        with open(archive, "rb") as raw:
            manifest = survey(archive, raw, shutil.disk_usage(staging).free)
            unpack(archive, raw, staging, manifest)
        verify_files(archive, staging, manifest)
        rows = verify_database(archive, staging, manifest)
        Store(staging)  # the migrations, before the folder gets its name
        _place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = manifest["files"]
    return BackupReport(target, rows, len(files), sum(f["bytes"] for f in files.values()), manifest["created_at"],
                        list(manifest.get("missing", [])), int(manifest["schema_version"]), archive.stat().st_size,
                        time.monotonic() - started)


def check_archive(archive: str | Path) -> Path:
    """The archive's absolute path, or ValueError when there is no such file."""
    path = Path(archive).expanduser().absolute()
    if not path.is_file():
        raise ValueError(f"restore: no archive at {path}")
    return path


def check_target(data_dir: str | Path) -> Path:
    """The target as an absolute path, or ValueError: not empty, a file, or its parent missing."""
    target = Path(data_dir).expanduser().absolute()
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"restore: {target} is not a folder; restore into an empty or new folder")
    if target.is_dir() and any(target.iterdir()):
        raise ValueError(f"restore: {target} is not empty; restore into an empty or new folder")
    if not target.parent.is_dir():
        raise ValueError(f"restore: folder {target.parent} does not exist")
    return target


def remove_abandoned_staging(target: Path) -> None:
    """Remove the staging folders of restores into ``target`` whose process is gone (kill -9): each
    holds an unpacked database with password hashes, and one inside the target keeps it non-empty."""
    remove_abandoned(target.parent, f".{target.name}.restore-")
    if target.is_dir() and not target.is_symlink():
        remove_abandoned(target, ".restore-")


def _staging(target: Path) -> Path:
    """A hidden scratch folder beside the target (renamed into place at the end) or, when only the
    empty target itself is writable (a mounted volume), inside it. Named with the pid, so that the
    next restore can tell an abandoned one."""
    for parent, prefix in ((target.parent, f".{target.name}.restore-"), (target, ".restore-")):
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-"))
    raise PermissionError(f"restore: cannot write {target}: permission denied")


def _place(staging: Path, target: Path) -> None:
    """Give the checked folder its name: one rename (onto the empty target, which POSIX allows), or
    moving its entries up when it was unpacked inside the target."""
    try:
        if staging.parent == target.parent:
            os.rename(staging, target)
            return
        for entry in staging.iterdir():
            os.rename(entry, target / entry.name)
        staging.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        raise ValueError(f"restore: {target} got files while restoring; restore into an empty or new folder") from None


_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@contextlib.contextmanager
def _open_tar(archive: Path, raw: BinaryIO) -> Iterator[tarfile.TarFile]:
    """The archive (plain or gzip: what backups write) read from its start, for one pass over its members."""
    raw.seek(0)
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
    try:
        tar = tarfile.open(fileobj=_Bounded(stream), mode="r:")  # type: ignore[call-overload]
    except _UNREADABLE:
        raise ValueError(f"restore: {archive.name} is not a tar archive (.tar, .tar.gz or .tgz)") from None
    try:
        with tar:
            yield tar
    except _UNREADABLE as exc:
        raise ValueError(f"restore: {archive.name} is damaged or cut short ({_line(exc)}); nothing restored") from None


class _Bounded:
    """The archive's (decompressed) bytes as tarfile reads them, refusing any one read larger than
    a chunk: tarfile reads a pax or GNU long-name header whole, so one crafted header in a small
    .tar.gz could take gigabytes of memory. Headers of real backups are a few blocks; data is read
    a chunk at a time."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if size is None or not 0 <= size <= _CHUNK:
            raise tarfile.ReadError(f"a header of {size} bytes, larger than any backup holds")
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()


def survey(archive: Path, raw: BinaryIO, free: int) -> dict[str, Any]:
    """Read the archive once, writing nothing: check each member's header, read the manifest, and
    check that the members are exactly the manifest's files with its sizes and fit in ``free``
    bytes. Returns the manifest.

    Backups write the manifest last (it holds the sha256 of the very bytes archived, known only
    once they are), and older backups must stay restorable, so the manifest is not required first:
    this pass reads only headers (a .tar is skipped through, a .tar.gz decompressed but never
    written), and sums the sizes as they come, so an archive that cannot fit stops the pass early.
    """
    members: list[tuple[str, bool, int]] = []
    seen: set[str] = set()
    manifest, total = None, 0
    with _open_tar(archive, raw) as tar:
        for member in tar:
            check_member(archive, member, seen)
            if member.name == MANIFEST:
                manifest = parse_manifest(archive, tar, member)
                continue
            if len(members) >= MAX_MEMBERS:
                raise ValueError(f"restore: {archive.name} holds more than {MAX_MEMBERS} members, more than any "
                                 f"backup; nothing restored")
            members.append((member.name, member.isdir(), member.size))
            total += -(-member.size // _BLOCK) * _BLOCK
            check_space(archive, total, free)
    if manifest is None:
        raise ValueError(f"restore: {archive.name} is not a cowdetect backup (no readable {MANIFEST})")
    listed, parents = manifest["files"], _parents(manifest["files"])
    for name, is_dir, size in members:
        check_listed(archive, name, is_dir, size, listed, parents)
    absent = sorted(set(listed) - {name for name, _, _ in members})
    if absent:
        raise ValueError(f"restore: {archive.name}: {absent[0]} is listed but not in the archive; the archive is "
                         f"damaged or was altered, nothing restored")
    return manifest


def check_space(archive: Path, total: int, free: int) -> None:
    """ValueError unless ``total`` bytes of files, 10% and :data:`SPARE` fit in ``free`` bytes."""
    need = total + total // 10 + SPARE
    if need > free:
        raise ValueError(f"restore: {archive.name} needs at least {need / 1e6:.0f} MB of free disk space "
                         f"(its files, 10% and {SPARE >> 20} MiB to spare); {free / 1e6:.0f} MB are free, nothing "
                         f"restored")


def parse_manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    """The manifest member, read (its size capped before a byte is read) and checked."""
    if member.size > MAX_MANIFEST:
        raise ValueError(f"restore: {archive.name}: its {MANIFEST} is {member.size} bytes, more than a backup "
                         f"writes ({MAX_MANIFEST >> 20} MiB); not a cowdetect backup")
    source = tar.extractfile(member)
    assert source is not None  # a file member: check_member saw to it
    with source:
        return read_manifest(archive, b"".join(iter(lambda: source.read(_CHUNK), b"")))


def check_listed(archive: Path, name: str, is_dir: bool, size: int, listed: dict[str, Any], parents: set[str]) -> None:
    """ValueError unless a member is a file the manifest lists, of the size it says, or a folder of one."""
    if is_dir:
        if name not in parents:
            raise ValueError(f"restore: {archive.name}: folder {name[:200]!r} holds no file of the manifest; the "
                             f"archive is damaged or was altered, nothing restored")
        return
    if name not in listed:
        raise ValueError(f"restore: {archive.name}: {name} is not in the manifest; the archive is damaged or was "
                         f"altered, nothing restored")
    if size != listed[name]["bytes"]:
        raise ValueError(f"restore: {archive.name}: {name} is {size} bytes in the archive but {listed[name]['bytes']} "
                         f"in its {MANIFEST}; the archive is damaged or was altered, nothing restored")


def _parents(names: dict[str, Any]) -> set[str]:
    return {parent.as_posix() for name in names for parent in PurePosixPath(name).parents if parent.name}


def unpack(archive: Path, raw: BinaryIO, into: Path, manifest: dict[str, Any]) -> None:
    """Extract the members :func:`survey` accepted into ``into``. Each is checked again as it comes
    (the file may have changed since), and no file gets more bytes than the manifest says."""
    listed, parents = manifest["files"], _parents(manifest["files"])
    seen: set[str] = set()
    with _open_tar(archive, raw) as tar:
        for member in tar:
            check_member(archive, member, seen)
            if member.name == MANIFEST:  # read by the survey; a data folder does not keep it
                continue
            check_listed(archive, member.name, member.isdir(), member.size, listed, parents)
            if member.isdir():
                (into / member.name).mkdir(parents=True, exist_ok=True)
            else:
                write_member(archive, tar, member, into, listed[member.name]["bytes"])


def write_member(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path, size: int) -> None:
    """Write one file member, stopping past ``size`` bytes (what the manifest says); the database and
    the secret are owner-only from their first byte, others keep their mode (no group/other write)."""
    dest = into / member.name
    mode = 0o600 if member.name in (DB_NAME, SECRET_FILE) else (member.mode & 0o755) | 0o600
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"restore: {archive.name}: {member.name} clashes with another member; nothing "
                         f"restored") from None
    source = tar.extractfile(member)
    assert source is not None  # a file member: check_member saw to it
    with source, os.fdopen(fd, "wb") as out:
        left = size
        while chunk := source.read(min(_CHUNK, left + 1)):
            if len(chunk) > left:
                raise ValueError(f"restore: {archive.name}: {member.name} holds more than the {size} bytes its "
                                 f"{MANIFEST} says; nothing restored")
            out.write(chunk)
            left -= len(chunk)
    with contextlib.suppress(OverflowError, ValueError, OSError):  # a time that cannot be set is no harm
        os.utime(dest, (member.mtime, member.mtime))


def check_member(archive: Path, member: tarfile.TarInfo, seen: set[str]) -> None:
    """ValueError unless ``member`` is a file or folder with a safe name (not absolute, no '..') that
    a data folder holds, named once (a second member of the same name would overwrite a checked one)."""
    if not (member.isfile() or member.isdir()) or member.issparse() or not _safe_name(member.name):
        kind = "link" if member.issym() or member.islnk() else "sparse file" if member.issparse() else \
            "file" if member.isfile() else "folder" if member.isdir() else "device or special file"
        raise ValueError(f"restore: {archive.name} holds an unsafe member {member.name[:200]!r} ({kind}); "
                         f"nothing restored")
    parts = PurePosixPath(member.name).parts
    if parts and parts[0] not in FOLDERS and not (member.isfile() and member.name in (DB_NAME, SECRET_FILE, MANIFEST)):
        raise ValueError(f"restore: {archive.name} holds {member.name[:200]!r}, which is no part of a data folder; "
                         f"nothing restored")
    if member.isfile() and member.name in seen:
        raise ValueError(f"restore: {archive.name} holds {member.name[:200]!r} twice; nothing restored")
    seen.add(member.name)


def _safe_name(name: str) -> bool:
    """Relative, no '..', and written the one way (no './', '//' or trailing '/': two spellings of
    one path could pass as two members)."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name \
        and "\x00" not in name and path.as_posix() == name


def read_manifest(archive: Path, data: bytes) -> dict[str, Any]:
    """The manifest, or ValueError: not JSON, not ours, a format or schema this cowdetect cannot read,
    a file without its size and checksum."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"restore: {archive.name} is not a cowdetect backup (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"restore: {archive.name} is not a cowdetect backup ({MANIFEST} is not ours)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"restore: {archive.name} is backup format version {manifest.get('format_version')!r}; "
                         f"this cowdetect reads version {FORMAT_VERSION}")
    schema = manifest.get("schema_version")
    if type(schema) is int and schema > SCHEMA_VERSION:
        raise ValueError(f"restore: {archive.name} holds database schema {schema!r}, newer than this cowdetect "
                         f"understands ({SCHEMA_VERSION}); upgrade cowdetect")
    if type(schema) is not int or schema < 1:
        raise ValueError(f"restore: {archive.name} holds database schema {schema!r}, which no cowdetect writes")
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("rows"), dict) or DB_NAME not in files:
        raise ValueError(f"restore: {archive.name}: {MANIFEST} lists no database; not a complete backup")
    if not all(isinstance(e, dict) and type(e.get("bytes")) is int and e["bytes"] >= 0
               and isinstance(e.get("sha256"), str) for e in files.values()):
        raise ValueError(f"restore: {archive.name}: {MANIFEST} lists a file without its size and sha256")
    return manifest


def verify_files(archive: Path, root: Path, manifest: dict[str, Any]) -> None:
    """ValueError unless the unpacked files are exactly the manifest's, each with its sha256 and size."""
    listed = manifest["files"]
    found = {p.relative_to(root).as_posix() for p in _walk(root)}
    extra, absent = sorted(found - set(listed)), sorted(set(listed) - found)
    if extra or absent:
        name, what = (extra[0], "not in the manifest") if extra else (absent[0], "listed but not in the archive")
        raise ValueError(f"restore: {archive.name}: {name} is {what}; the archive is damaged or was altered, "
                         f"nothing restored")
    bad = [name for name, entry in sorted(listed.items()) if _digest(root / name) != (entry.get("sha256"),
                                                                                     entry.get("bytes"))]
    if bad:
        raise ValueError(f"restore: {archive.name}: checksum mismatch in {len(bad)} of {len(listed)} files "
                         f"(e.g. {bad[0]}); the archive is damaged or was altered, nothing restored")


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_database(archive: Path, root: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """The unpacked database's rows per table; ValueError unless its schema is exactly what the
    migrations make for its version (:func:`check_schema`), it passes SQLite's integrity and
    foreign key checks, and its schema version and row counts match the manifest."""
    differ = ValueError(f"restore: {archive.name}: the database's rows or schema differ from the manifest; "
                        f"nothing restored")
    conn = sqlite3.connect(root / DB_NAME)
    try:
        schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if schema != manifest["schema_version"]:
            raise differ
        check_schema(archive, conn, schema)  # first: nothing else reads a table before it passed
        check_integrity(archive, conn)
        rows = table_counts(conn)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"restore: {archive.name}: the database cannot be read ({_line(exc)})") from None
    finally:
        conn.close()
    if rows != manifest["rows"]:
        raise differ
    return rows


def check_schema(archive: Path, conn: sqlite3.Connection, version: int) -> None:
    """ValueError naming the first difference between the database's schema (every table, index,
    trigger and view, SQLite's own included) and the one cowdetect's migrations make for
    ``version``: a restored trigger would run on every later write (e.g. make a viewer an admin),
    a missing table leaves a data folder on which every command fails."""
    found, expected = Counter(schema_of(conn)), Counter(migrated_schema(version))
    extra, absent = found - expected, expected - found
    if not extra and not absent:
        return
    kind, name = min(extra or absent, key=lambda e: (e[0] != "table", e))[:2]  # a table first: the clearest
    label = f"{kind if kind.isalpha() else 'entry'} {name[:80]!r}"
    if (kind, name) in {entry[:2] for entry in extra} and (kind, name) in {entry[:2] for entry in absent}:
        what = f"the database's {label} differs from what cowdetect's migrations create"
    elif extra:
        what = f"the database holds {label}, which cowdetect's migrations do not create"
    else:
        what = f"the database lacks {label}, which cowdetect's migrations create"
    raise ValueError(f"restore: {archive.name}: {what} (schema {version}); nothing restored")


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """Every entry of the database's sqlite_master as (type, name, table, normalized sql). Nothing is
    left out by name: with writable_schema anyone can add a trigger named like SQLite's own."""
    return [(str(kind), str(name), str(table), _normalized(sql))
            for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")]


@functools.lru_cache(maxsize=None)
def migrated_schema(version: int) -> tuple[tuple[str, str, str, str], ...]:
    """:func:`schema_of` a database made by the first ``version`` migrations (in memory: the schema
    text is the same as in a file)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        return tuple(schema_of(conn))
    finally:
        conn.close()


# strings and quoted names are kept as written; only the whitespace between them is collapsed, so that
# an edit of a migration's layout does not make older backups unrestorable
_QUOTED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])""")


def _normalized(sql: Any) -> str:
    if not isinstance(sql, str):
        return "" if sql is None else repr(sql)
    parts = _QUOTED.split(sql)
    return "".join(part if i % 2 else re.sub(r"\s+", " ", part) for i, part in enumerate(parts)).strip()


def check_integrity(archive: Path, conn: sqlite3.Connection) -> None:
    """ValueError unless SQLite's integrity check passes and no row points to a missing row."""
    problem = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    if problem != "ok":
        raise ValueError(f"restore: {archive.name}: the database fails SQLite's integrity check "
                         f"({(problem.splitlines() or [''])[0][:200]}); nothing restored")
    orphan = conn.execute("PRAGMA foreign_key_check").fetchone()
    if orphan is not None:
        raise ValueError(f"restore: {archive.name}: the database's {orphan[0]} row {orphan[1]} points to a missing "
                         f"{orphan[2]} row; nothing restored")


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
