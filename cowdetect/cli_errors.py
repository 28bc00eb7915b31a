"""The command line's error guard: what an error is shown as (one line), which errors are the
user's to fix (exit 2) and where the traceback of any other goes (exit 1).

:func:`cowdetect.cli.main` is the one place that catches; this module only words and logs.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence


# errno -> what the user can do about it
OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or use another --data-dir",
    errno.EDQUOT: "the disk quota is used up; free some space or use another --data-dir",
    errno.EROFS: "the file system is read-only; use a writable --data-dir or output path",
    errno.EACCES: "this user may not do that; check the permissions",
    errno.EPERM: "this user may not do that; check the permissions",
}


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a user can meet and fix (bad input, an unusable data folder or file): one line, exit 2.
    FloatingPointError: :class:`cowdetect.engine.TrainingDivergedError` (a non-finite loss) is one."""
    import sqlite3

    from .weights import WeightsUnavailableError

    return ValueError, OSError, sqlite3.DatabaseError, WeightsUnavailableError, FloatingPointError


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line: terminal colour codes dropped, whitespace runs (newlines) made one space."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_text(exc: BaseException, data_dir: str | None = None) -> str:
    """The one line the CLI prints for an expected error (without the ``error: `` prefix)."""
    import sqlite3

    from .store.base import DB_NAME
    from .store.schema import DatabaseUnusable, describe_database_error

    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:  # not one of our own messages
        where = " -> ".join(_shown_path(name, data_dir) for name in (exc.filename, exc.filename2) if name)
        hint = OS_HINTS.get(exc.errno)
        text = (f"{where}: " if where else "") + exc.strerror + (f" ({hint})" if hint else "")
    elif isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, DatabaseUnusable):
        text = describe_database_error(exc, Path(data_dir or ".").resolve() / DB_NAME)
    else:
        text = str(exc) or type(exc).__name__
    return one_line(text)


def _shown_path(name: Any, data_dir: str | None) -> str:
    """How a path in an OS error is shown: a scratch file inside the data folder (an import's
    staging folder, a half-written file) means nothing to the user, the data folder does."""
    path = Path(str(name))
    if data_dir and Path(data_dir).is_dir():
        folder = Path(data_dir).resolve()
        if folder in path.parents and (path.name.startswith(".tmp-") or path.relative_to(folder).parts[0] == "tmp"):
            return f"the data folder {folder}"
    return str(name)


def log_unexpected(argv: Sequence[str], data_dir: str | None) -> str:
    """Append the traceback being handled to ``<data folder>/logs/errors.log`` (a temporary file when
    the data folder is missing or not writable); returns where it went, and why there."""
    import tempfile
    import traceback

    text = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} python -m cowdetect {' '.join(argv)}\n"
            f"{traceback.format_exc()}\n")
    if data_dir and Path(data_dir).is_dir():
        log = Path(data_dir).resolve() / "logs" / "errors.log"
        try:
            log.parent.mkdir(exist_ok=True)
            with open(log, "a", encoding="utf-8") as out:
                out.write(text)
            return str(log)
        except OSError:
            pass
    try:
        fd, tmp = tempfile.mkstemp(prefix="cowdetect-error-", suffix=".log", text=True)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        return f"{tmp} (the data folder could not take it)"
    except OSError:
        return "nowhere: neither the data folder nor the temporary folder can be written"
