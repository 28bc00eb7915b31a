"""The command line's argument checks: argparse value types and output/input path checks.

Every number is checked where argparse reads it (:func:`number`, :func:`whole`), and every output
path before any work starts (:func:`output_file`, :func:`output_folder`, :func:`distinct_files`),
so a refused command stores nothing. A refusal is a ``ValueError`` (or :class:`UsageError`, from
argparse itself) naming the option; :mod:`cowdetect.cli` prints it as one line.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence


def number(kind: type, low: float, high: float, what: str, low_open: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` reading ``kind`` (int or float) from ``low`` to ``high`` (``low`` itself
    excluded when ``low_open``). NaN and infinities are refused: ``nan`` passes every ``<`` test,
    so a range check alone lets it through to fail (or silently misbehave) mid-run."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value > high or (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type by it in some messages
    return parse


def whole(low: int, high: int, what: str | None = None) -> Callable[[str], int]:
    """:func:`number` for whole numbers; ``what`` names them in errors (default: the range)."""
    return number(int, low, high, what or f"a whole number from {low} to {high}")


class UsageError(ValueError):
    """A command line argparse refused (an unknown option, a bad value, a missing argument)."""


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (main prints it, exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _writable_folder(folder: Path, option: str) -> None:
    """Refuse, before any work, an output ``folder`` that is missing, not a folder or not writable."""
    folder = folder if str(folder) else Path(".")
    if not folder.exists():
        raise ValueError(f"{option}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{option}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write in {folder} (permission denied)")


def output_file(path: str, option: str, suffixes: Sequence[str] = ()) -> Path:
    """An output file checked before any work: not a folder, the right kind, in a writable folder."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{option}: {path} is a folder; give a file name")
    if suffixes and target.suffix.lower() not in suffixes:
        raise ValueError(f"{option}: expected a file ending in {', '.join(suffixes)}, got {path}")
    _writable_folder(target.parent, option)
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{option}: {path} cannot be overwritten (permission denied)")
    return target


def distinct_files(outputs: Sequence[tuple[str | None, str]], inputs: Sequence[str | None]) -> None:
    """Refuse an output that is an input or another output: it would be overwritten mid-way."""
    seen = {Path(p).resolve(): "an input" for p in inputs if p and Path(p).exists()}
    for path, option in outputs:
        if not path:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise ValueError(f"{option}: {path} is {seen[resolved]} of this command; give another file name")
        seen[resolved] = f"also given as {option}"


def output_folder(path: str, option: str) -> Path:
    """An output folder checked before any work: a folder or new, in (or being) a writable folder."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{option}: {path} is a file, not a folder")
    _writable_folder(target if target.is_dir() else target.parent, option)
    return target


def input_file(path: str, what: str) -> Path:
    """An input file that exists and is a regular file (a folder or a device gets its own sentence)."""
    target = Path(path)
    if not target.is_file():
        raise ValueError(f"{what} {path}: " + ("a folder; give a file" if target.is_dir() else
                                                "not a regular file" if target.exists() else "no such file"))
    return target


def counting_line(text: str) -> Any:
    """argparse type of ``--line``: a :class:`cowdetect.counting.Line` from '[NAME=]x1,y1,x2,y2'
    (pixels); checked against the frame later, when its size is known."""
    from .counting import parse_line

    try:
        return parse_line(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def counting_zone(text: str) -> Any:
    """argparse type of ``--zone``: a :class:`cowdetect.counting.Zone` from '[NAME=]x1,y1,x2,y2,x3,y3,...'."""
    from .counting import parse_zone

    try:
        return parse_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
