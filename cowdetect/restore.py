"""Restoring a backup (see :mod:`cowdetect.backup`) into an empty folder: unpacking the archive
safely, then verifying the restored files and database.

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
import json
import os
import re
import shutil
import sqlite3  # the unpacked database is checked before the store (and its migrations) may open it
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from .accounts import SECRET_FILE
from .backup import FOLDERS, FORMAT, FORMAT_VERSION, MANIFEST, BackupReport, safe_name, table_counts, walk
from .files import remove_abandoned
from .store import DB_NAME, SCHEMA_VERSION, Store
from .store.schema import MIGRATIONS

_CHUNK = 1 << 20
# What a restore accepts before it has unpacked anything. A manifest lists ~160 bytes per file:
# 128 MiB is room for ~800,000 files; the members cap keeps tarfile's list of headers in memory bounded.
MAX_MANIFEST = 128 << 20
MAX_MEMBERS = 1_000_000
# free disk a restore keeps beyond its files (+10%): the migrations and SQLite's journal need room
SPARE = 64 << 20
_BLOCK = 4096


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
    for parent, prefix in _staging_places(target):
        if parent == target.parent or (target.is_dir() and not target.is_symlink()):
            remove_abandoned(parent, prefix)


def _staging_places(target: Path) -> tuple[tuple[Path, str], ...]:
    """Where a restore into ``target`` stages, in order of preference: (folder, name prefix)."""
    return (target.parent, f".{target.name}.restore-"), (target, ".restore-")


def _staging(target: Path) -> Path:
    """A hidden scratch folder beside the target (renamed into place at the end) or, when only the
    empty target itself is writable (a mounted volume), inside it. Named with the pid, so that the
    next restore can tell an abandoned one."""
    for parent, prefix in _staging_places(target):
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
            tar.members.clear()  # tarfile keeps every header it read: a million would be ~1 GB
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
    if not (member.isfile() or member.isdir()) or member.issparse() or not safe_name(member.name):
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
    found = {p.relative_to(root).as_posix() for p in walk(root)}
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
