"""Writing files atomically, so a crash or kill never leaves half a file behind; and cleaning up
after processes that were killed (their scratch files are named by their pid)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[str], None], private: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600 — unless
    ``private``: then it stays owner-only from its first byte (a secret, such as a stream's password,
    is never readable by others, not even for a moment). On error the temporary file is removed
    and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the suffix: torch.save names its zip records after the file stem
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid runs (a zombie — dead, not yet reaped — counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def remove_abandoned(folder: Path, prefix: str, suffix: str = "") -> None:
    """Remove the entries of ``folder`` named ``<prefix><pid>[-…]<suffix>`` that are ours and whose
    process is gone: nobody else would ever clean them up. A live process's (any user's) stay."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        middle = entry.name[len(prefix):len(entry.name) - len(suffix)]
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix) and middle):
            continue
        pid = middle.split("-")[0]
        if not pid.isdigit() or int(pid) == 0 or pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
