"""Which folders on the server an import may read: only those an admin listed in
``COWDETECT_IMPORT_ROOTS`` (folders separated by ``os.pathsep``, ':' on Linux), and inside them.

A web page that reads server folders must not become a way to read, or even probe, the rest of
the server. So a folder outside every root, a missing one and an unreadable one all get the same
:data:`NOT_ALLOWED` message (it never says whether a path exists), symlinks and '..' are resolved
before the check, and a file named inside an allowed folder that resolves out of it reads as
missing (:class:`FolderImages`).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "COWDETECT_IMPORT_ROOTS"
NOT_ALLOWED = f"That folder is not inside an import folder the admin allowed ({ENV})."
HOW_TO_ALLOW = (f"Importing from a folder on the server is off. An admin turns it on by listing the allowed folders "
                f"in {ENV} (separated by '{os.pathsep}') before starting the app, e.g. "
                f"{ENV}=/srv/coco{os.pathsep}/srv/barn ./run.sh app")


def import_roots(value: str | None = None) -> list[Path]:
    """The allowed folders, resolved (symlinks followed): ``value`` or else ``$COWDETECT_IMPORT_ROOTS``,
    split on ``os.pathsep``; empty entries are ignored, and relative ones too (they would depend on
    where the server was started). An empty list means no server folder may be read."""
    text = os.environ.get(ENV, "") if value is None else value
    roots = []
    for entry in text.split(os.pathsep):
        if entry.strip() and Path(entry.strip()).is_absolute():
            roots.append(Path(entry.strip()).resolve())
    return roots


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def allowed_folder(path: str | Path, roots: list[Path] | None = None) -> Path:
    """The real path of folder ``path`` when it lies inside one of ``roots`` (default:
    :func:`import_roots`) and this process may list and read it.

    Raises:
        ValueError: :data:`NOT_ALLOWED`, the same words for a path outside every root, a missing
            or unreadable one, a file, or a path that is not text — so no answer tells whether
            some other server path exists.
    """
    roots = import_roots() if roots is None else roots
    try:
        real = Path(path).resolve(strict=True)  # follows symlinks and '..'
        inside = any(_within(real, root) for root in roots)
        readable = inside and real.is_dir() and os.access(real, os.R_OK | os.X_OK)
    except (OSError, RuntimeError, ValueError, TypeError):  # missing, a symlink loop, a NUL byte, not a path
        readable = False
    if not readable:
        raise ValueError(NOT_ALLOWED)
    return real


REMOTE_SCHEMES = ("hub://", "al://")  # Activeloop's hosted datasets; other URLs would use the server's credentials


def allowed_dataset(source: str, roots: list[Path] | None = None) -> str:
    """A Deep Lake ``source`` an import may open: a hosted dataset (``hub://``, ``al://``), or a
    folder (a plain path or ``file://``) inside the roots — the same check and the same
    :data:`NOT_ALLOWED` words as :func:`allowed_folder`. Other URLs (``s3://``, ``gcs://``, …)
    are refused: they would read with the server's cloud credentials."""
    source = str(source).strip()
    if source.startswith(REMOTE_SCHEMES):
        return source
    if "://" in source and not source.startswith("file://"):
        raise ValueError(f"Deep Lake dataset: expected {' or '.join(REMOTE_SCHEMES)} or a folder on the server, "
                         f"got a {source.split('://', 1)[0]}:// URL")
    return str(allowed_folder(source.removeprefix("file://"), roots))


class FolderImages(dict):
    """The files of an allowed folder as the ``{file name: bytes}`` that
    :func:`cowdetect.formats.import_coco` reads, read lazily, one at a time.

    ``get(name)`` gives None — what a missing file gives — for a name that resolves outside the
    folder (an absolute path, '..', a symlink pointing out), so the JSON's file names cannot read
    or probe other server files either.
    """

    def __init__(self, folder: str | Path, roots: list[Path] | None = None) -> None:
        super().__init__()
        self.folder = allowed_folder(folder, roots)

    def get(self, name: object, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        """The bytes of file ``name`` (relative to the folder), or ``default``."""
        try:
            path = (self.folder / str(name)).resolve(strict=True)
            if self.folder in path.parents and path.is_file():
                return path.read_bytes()
        except (OSError, RuntimeError, ValueError):
            pass
        return default

    def __repr__(self) -> str:
        return f"FolderImages({str(self.folder)!r})"
