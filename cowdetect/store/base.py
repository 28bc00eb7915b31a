"""The data folder and its database connections (one short connection per call)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..accounts import User, local_user
from .schema import migrate

DB_NAME = "cowdetect.sqlite"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_data_folder(path: Path) -> None:
    """Create the data folder ``path`` if needed, or say in one sentence why it cannot be one: it is
    a file, it lies inside a file, or this user may not read and write it (SQLite writes beside its
    database even to read it, in WAL mode)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"data folder: expected a folder, got the file {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path)
        raise ValueError(f"data folder: {path} cannot be made, {blocker} is a file, not a folder") from None
    except PermissionError:
        raise PermissionError(f"data folder {path}: this user may not create it (permission denied); use a folder "
                              f"you can write to") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError(f"data folder {path}: this user may not read and write it (its permissions, or a "
                              f"read-only disk); use a folder you can write to")


class StoreBase:
    """A data folder: where the database lies, how to connect, and the rule that files stay inside."""

    def __init__(self, data_dir: str | Path, user: User | None = None) -> None:
        """``user``: who acts through this store (its role is checked by every write, its name
        recorded in the activity log); without one, the local user (see
        :func:`cowdetect.accounts.local_user`)."""
        self.user = user if user is not None else local_user()
        self.data_dir = Path(data_dir).resolve()
        open_data_folder(self.data_dir)
        self.db_path = self.data_dir / DB_NAME
        migrate(self.db_path)

    def as_user(self, user: User) -> "StoreBase":
        """The same data folder, acting as ``user``."""
        return type(self)(self.data_dir, user)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: committed on success, rolled back on error."""
        conn = sqlite3.connect(self.db_path, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[sqlite3.Connection]:
        """A connection holding SQLite's write lock from the first statement (BEGIN IMMEDIATE).

        A read followed by a write inside it is atomic across processes: two processes cannot
        both see "free" and both take it (a job claiming its device, two imports of the same
        image). Keep it short: other writers wait for it.
        """
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        """The first row a query gives, or None (in its own short connection)."""
        with self.connect() as conn:
            return conn.execute(sql, args).fetchone()

    def inside(self, relative: str | Path) -> Path:
        """Absolute path of a file stored under the data folder; refuses to leave it."""
        path = (self.data_dir / relative).resolve()
        if self.data_dir not in path.parents:
            raise ValueError(f"path {relative!r} leaves the data folder {self.data_dir}")
        return path

    @property
    def weights_dir(self) -> Path:
        """Where converted pretrained weights are kept (see cowdetect.ssd_weights)."""
        return self.data_dir / "weights"
