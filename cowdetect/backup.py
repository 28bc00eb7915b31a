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
written owner-only (0600).

A restore checks everything before anything appears under the target's name: members (no
absolute paths, '..', links or devices), the manifest (ours, a schema this cowdetect reads),
every file's sha256 and every table's row count; then it runs the migrations and renames the
unpacked folder into place.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3  # the backup API copies the database as a whole, which the store's per-call connections do not
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from .accounts import SECRET_FILE
from .store import DB_NAME, SCHEMA_VERSION, Store

FORMAT = "cowdetect-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODES = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar": "w"}  # suffix -> tarfile write mode
# which columns of the database name files (relative to the data folder)
REFERENCES = {"images": ("file",), "models": ("checkpoint",), "runs": ("checkpoint",), "videos": ("file", "gt_file")}
# the folders a backup holds (with cowdetect.sqlite, secret.key and manifest.json): a restore writes nothing else
FOLDERS = ("images", "models", "runs", "videos", "weights")
_CHUNK = 1 << 20


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
    with tempfile.TemporaryDirectory(dir=_scratch(store.data_dir), prefix="backup-") as tmp:
        db = Path(tmp) / DB_NAME
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


def _scratch(data_dir: Path) -> Path | None:
    """The data folder's tmp/ (same disk: files can be hard-linked), else None (the system's temp)."""
    try:
        (data_dir / "tmp").mkdir(exist_ok=True)
        return data_dir / "tmp" if os.access(data_dir / "tmp", os.W_OK) else None
    except OSError:
        return None


def copy_database(db_path: Path, dest: Path) -> None:
    """Copy the live database into ``dest`` with SQLite's backup API, in one step: it reads one
    snapshot (WAL: writers go on meanwhile), so the copy is a state the database really had."""
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
    size, as read into the archive) to ``out`` via ``out.partial``; returns the manifest's files."""
    partial = out.with_name(out.name + ".partial")
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
    folders with safe names, the manifest is ours and not newer than this cowdetect, each file's
    sha256 and each table's row count match it. Then the migrations run (an older backup is
    brought up to date) and the folder is renamed into place.

    Raises:
        ValueError: the archive is unreadable, not a cowdetect backup, unsafe or damaged; the
            target is not empty.
        PermissionError: the target cannot be written.
    """
    started = time.monotonic()
    archive, target = check_archive(archive), check_target(data_dir)
    staging = _staging(target)
    try:
        manifest = unpack(archive, staging)
        verify_files(archive, staging, manifest)
        rows = verify_rows(archive, staging, manifest)
        secret = staging / SECRET_FILE
        for path in (secret, staging / DB_NAME):
            if path.is_file():
                path.chmod(0o600)
        (staging / MANIFEST).unlink()
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


def _staging(target: Path) -> Path:
    """A hidden scratch folder beside the target (renamed into place at the end) or, when only the
    empty target itself is writable (a mounted volume), inside it."""
    for parent, prefix in ((target.parent, f".{target.name}.restore-"), (target, ".restore-")):
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
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


def unpack(archive: Path, into: Path) -> dict[str, Any]:
    """Extract the archive's members into ``into`` (each checked first); returns the manifest."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        raise ValueError(f"restore: {archive.name} is not a tar archive (.tar, .tar.gz or .tgz)") from None
    seen: set[str] = set()
    try:
        with tar:
            for member in tar:
                check_member(archive, member, seen)
                tar.extract(member, into, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"restore: {archive.name} is damaged or cut short ({_line(exc)}); nothing restored") from None
    return read_manifest(archive, into)


def check_member(archive: Path, member: tarfile.TarInfo, seen: set[str]) -> None:
    """ValueError unless ``member`` is a file or folder with a safe name (not absolute, no '..') that
    a data folder holds, named once (a second member of the same name would overwrite a checked one)."""
    if not (member.isfile() or member.isdir()) or not _safe_name(member.name):
        kind = "link" if member.issym() or member.islnk() else "file" if member.isfile() else \
            "folder" if member.isdir() else "device or special file"
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
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name \
        and "\x00" not in name


def read_manifest(archive: Path, into: Path) -> dict[str, Any]:
    """The unpacked manifest, or ValueError: none, not ours, a format or schema this cowdetect cannot read."""
    path = into / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"restore: {archive.name} is not a cowdetect backup (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"restore: {archive.name} is not a cowdetect backup ({MANIFEST} is not ours)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"restore: {archive.name} is backup format version {manifest.get('format_version')!r}; "
                         f"this cowdetect reads version {FORMAT_VERSION}")
    schema = manifest.get("schema_version")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ValueError(f"restore: {archive.name} holds database schema {schema!r}, newer than this cowdetect "
                         f"understands ({SCHEMA_VERSION}); upgrade cowdetect")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("rows"), dict) \
            or DB_NAME not in manifest["files"]:
        raise ValueError(f"restore: {archive.name}: {MANIFEST} lists no database; not a complete backup")
    return manifest


def verify_files(archive: Path, root: Path, manifest: dict[str, Any]) -> None:
    """ValueError unless the unpacked files are exactly the manifest's, each with its sha256 and size."""
    listed = manifest["files"]
    found = {p.relative_to(root).as_posix() for p in _walk(root)} - {MANIFEST}
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


def verify_rows(archive: Path, root: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """The unpacked database's rows per table; ValueError unless they and its schema match the manifest."""
    conn = sqlite3.connect(root / DB_NAME)
    try:
        rows, schema = table_counts(conn), int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"restore: {archive.name}: the database cannot be read ({_line(exc)})") from None
    finally:
        conn.close()
    if schema != manifest["schema_version"] or rows != manifest["rows"]:
        raise ValueError(f"restore: {archive.name}: the database's rows or schema differ from the manifest; "
                         f"nothing restored")
    return rows


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
