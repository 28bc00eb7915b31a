"""Backups of a data folder: one .tar[.gz] made while the app and jobs run, restored into an empty folder.

(Skeleton: the functions below are being written; signatures are fixed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import Store


@dataclass
class BackupReport:
    """What a backup or restore holds: rows per table, files and bytes."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.rows, "files": self.files, "bytes": self.bytes, "at": self.at}

    def summary(self) -> str:
        return f"{self.path}: {self.files} files, {sum(self.rows.values())} rows"


def backup(store: Store, out: str | Path) -> BackupReport:
    raise NotImplementedError


def restore(archive: str | Path, data_dir: str | Path) -> BackupReport:
    raise NotImplementedError
