"""The command line's admin commands: ``users`` (accounts and roles) and ``backup`` / ``restore``.

Kept apart from :mod:`cowdetect.cli` (which registers them) because they are about the data
folder as a whole, not about images and models. The CLI acts as the local user (admin): whoever
can run it on the server can read the data folder's files anyway.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any


def add_users_args(p: argparse.ArgumentParser) -> None:
    from .accounts import ROLES

    p.add_argument("action", choices=["add", "list", "remove", "set-role", "set-password"],
                   help="add NAME --role R | list | remove NAME | set-role NAME --role R | set-password NAME")
    p.add_argument("name", nargs="?", help="the account's name")
    p.add_argument("--role", choices=ROLES, help="viewer, labeler, trainer or admin")


def read_password(prompt: str = "password: ") -> str:
    """A password from a prompt (asked twice) on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise ValueError("password: the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users(args: argparse.Namespace) -> int:
    from .store import Store

    if args.action != "list" and not args.name:
        raise ValueError(f"users {args.action}: give the account's NAME")
    if args.action in ("add", "set-role") and not args.role:
        raise ValueError(f"users {args.action}: give --role (viewer, labeler, trainer or admin)")
    store = Store(args.data_dir)
    if args.action == "list":
        rows = store.users()
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            print(f"{r['name']:<32} {r['role']:<8} {r['created_at']}")
        if not rows and not args.json:
            print("no accounts: the app runs for this machine only (see ./run.sh app --network)")
        return 0
    if args.action == "add":
        _check_new_account(store, args.name)  # before asking for a password
        store.add_user(args.name, args.role, read_password())
    elif args.action == "remove":
        store.remove_user(args.name)
    elif args.action == "set-role":
        store.set_role(args.name, args.role)
    else:
        _check_account(store, args.name)  # before asking for a password
        store.set_password(args.name, read_password())
    done = {"add": f"added {args.name} ({args.role})", "remove": f"removed {args.name}",
            "set-role": f"{args.name} is now {args.role}", "set-password": f"password of {args.name} changed"}
    _say(args, {"user": args.name, "action": args.action, "role": args.role}, done[args.action])
    return 0


def _check_new_account(store: Any, name: str) -> None:
    """Refuse a bad or taken account name before a password is asked for."""
    from .accounts import check_name

    check_name(name)
    if store.account(name) is not None:  # the store's lookup: names ignore case
        raise ValueError(f"user {name!r} exists already")


def _check_account(store: Any, name: str) -> None:
    """Refuse an unknown account name before a password is asked for."""
    if store.account(name) is None:
        raise ValueError(f"user {str(name)[:80]!r}: no such account")


def add_backup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="the archive to write: OUT.tar or OUT.tar.gz (must not exist yet)")


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .backup import backup
    from .store import DB_NAME, Store

    if not (Path(args.data_dir) / DB_NAME).is_file():  # Store() would make an empty folder and back that up
        raise ValueError(f"backup: no data folder at {Path(args.data_dir).absolute()} (no {DB_NAME})")
    try:
        report = backup(Store(args.data_dir), args.out)
    except PermissionError as exc:  # a folder we may not write: one line, as main prints every ValueError
        raise ValueError(str(exc)) from None
    _say(args, report.as_dict(), report.summary())
    return 0


def add_restore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="a backup made by `backup` (.tar or .tar.gz)")


def cmd_restore(args: argparse.Namespace) -> int:
    from .restore import restore

    try:
        report = restore(args.archive, args.data_dir)
    except PermissionError as exc:
        raise ValueError(str(exc)) from None
    _say(args, report.as_dict(), report.summary())
    return 0


def _say(args: argparse.Namespace, as_json: dict[str, Any], line: str) -> None:
    print(json.dumps(as_json, indent=2, default=str) if args.json else line)
