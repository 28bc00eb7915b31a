"""Accounts, the role check every write goes through, the activity log and a few settings."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ..accounts import (ACTIONS, LOCK_SECONDS, MAX_FAILURES, PermissionDenied, TooManyFailures, User,
                        check_name, check_role, hash_password, hash_stamp, password_matches, read_session, run_action,
                        session_secret, sign_session)
from .base import StoreBase

# an Argon2 hash of a random password: checked when a login names no account, so a wrong user
# name costs as long as a wrong password (the time taken does not tell which names exist)
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$L4mCJ4BRAut9IQ0HzE+B3A$tWBkSi7ftt1LgnGgTqUoP9MvfT8paXFQNzlXJsoQA08"


class UsersMixin(StoreBase):
    """Who may do what (:meth:`require`), who did what (:meth:`activity`), and the accounts."""

    # -- the check and the log ----------------------------------------------------------
    def require(self, action: str) -> None:
        """Raise :class:`PermissionDenied` unless this store's user may do ``action`` — with the role
        the account has NOW (read from the database on every call: a page or a job that holds an
        older User must not keep powers that were taken away, nor act for a removed account)."""
        user = self._current_user()
        if not user.may(action):
            raise PermissionDenied(f"{user.name} ({user.role}) may not {action.replace('_', ' ')}: "
                                   f"that needs the {ACTIONS[action]} role or higher")

    def _current_user(self) -> User:
        """This store's user as the accounts table says now; the local user (the shell) as it is."""
        if self.user.name.startswith("local:"):
            return self.user
        row = self._one("SELECT name, role FROM users WHERE name = ?", (self.user.name,))
        if row is None:
            raise PermissionDenied(f"{self.user.name}: no such account (removed?); log in again")
        return User(row["name"], row["role"])

    def _log(self, conn: sqlite3.Connection, action: str, target: str = "", detail: str = "") -> None:
        """Add a line to the activity log as this store's user, inside ``conn``'s transaction (so
        the line and the change it describes are committed together). Only the store's own
        (role-checked) writes call it."""
        conn.execute("INSERT INTO activity(user, action, target, detail) VALUES (?,?,?,?)",
                     (self.user.name, action, str(target)[:200], str(detail)[:500]))

    def record(self, action: str, target: str = "", detail: str = "",
               conn: sqlite3.Connection | None = None) -> None:
        """Add a line about work done outside the store (a backup) to the activity log. Admin only:
        everyone else's lines come from the writes they make."""
        self.require("settings")
        if conn is not None:
            self._log(conn, action, target, detail)
            return
        with self.connect() as own:
            self._log(own, action, target, detail)

    def activity(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` lines of the activity log: at (UTC), user, action, target, detail."""
        with self.connect() as conn:
            rows = conn.execute("SELECT at, user, action, target, detail FROM activity ORDER BY id DESC LIMIT ?",
                                (int(limit),)).fetchall()
        return [dict(r) for r in rows]

    # -- accounts -----------------------------------------------------------------------
    def has_accounts(self) -> bool:
        """Whether any account exists (then the app asks everyone to log in)."""
        return self._one("SELECT 1 FROM users LIMIT 1") is not None

    def has_admin(self) -> bool:
        """Whether an admin account exists (serving on the network needs one)."""
        return self._one("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1") is not None

    def users(self) -> list[dict[str, Any]]:
        """Accounts (name, role, created_at), never their hashes. Admin only."""
        self.require("users")
        with self.connect() as conn:
            return [dict(r) for r in conn.execute("SELECT name, role, created_at FROM users ORDER BY name")]

    def add_user(self, name: str, role: str, password: str) -> None:
        """Create an account. Admin only — except the first account, which must be an admin's and
        may be made by whoever can already write the data folder (this store's user)."""
        check_name(name)
        check_role(role)
        first = not self.has_accounts()
        if first and role != "admin":
            raise ValueError(f"the first account must be an admin's (so someone can manage the others), not a {role}'s")
        if not first:
            self.require("users")
        password_hash = hash_password(password)
        with self.write_lock() as conn:
            if first and conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():  # another made the first meanwhile
                self.require("users")
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"user {name!r} exists already")
            conn.execute("INSERT INTO users(name, role, password_hash) VALUES (?,?,?)", (name, role, password_hash))
            self._log(conn, "add user", name, role)
        # the database now holds password hashes: only the app's own OS user may read it
        for path in self.data_dir.glob(self.db_path.name + "*"):
            path.chmod(0o600)

    def set_role(self, name: str, role: str) -> None:
        """Change an account's role. Admin only; the last admin cannot be demoted."""
        self.require("users")
        check_role(role)
        with self.write_lock() as conn:
            old = self._role_of(conn, name)
            if old == "admin" and role != "admin" and self._admins(conn) == 1:
                raise ValueError(f"user {name!r} is the last admin; make another admin first")
            conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            self._stop_runs_of(conn, name, User(name, role))
            self._log(conn, "set role", name, f"{old} -> {role}")

    def set_password(self, name: str, password: str) -> None:
        """Change a password (an admin's, or the user's own); their other sessions end."""
        if name.lower() != self.user.name.lower():
            self.require("users")
        password_hash = hash_password(password)
        with self.write_lock() as conn:
            self._role_of(conn, name)
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
            conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))  # a new password unlocks
            self._log(conn, "set password", name, "")

    def remove_user(self, name: str) -> None:
        """Delete an account (its sessions end; the activity log keeps its name). Admin only; the
        last admin stays while other accounts exist, so someone can still manage them."""
        self.require("users")
        with self.write_lock() as conn:
            role = self._role_of(conn, name)
            others = int(conn.execute("SELECT COUNT(*) FROM users WHERE name != ?", (name,)).fetchone()[0])
            if role == "admin" and self._admins(conn) == 1 and others:
                raise ValueError(f"user {name!r} is the last admin and {others} other accounts exist; "
                                 f"make another admin first")
            conn.execute("DELETE FROM users WHERE name = ?", (name,))
            self._stop_runs_of(conn, name, None)
            self._log(conn, "remove user", name, role)

    @staticmethod
    def _stop_runs_of(conn: sqlite3.Connection, name: str, now_as: User | None) -> None:
        """Ask the queued and running jobs of an account that was removed (``now_as`` None) or whose
        new role no longer allows them to stop: a job acts as its starter, so it must not go on
        writing with a role that was taken away (jobs read stop requests about once a second)."""
        rows = conn.execute("SELECT id, kind FROM runs WHERE user = ? AND status IN ('queued', 'running')",
                            (name,)).fetchall()
        for row in rows:
            if now_as is None or not now_as.may(run_action(row["kind"])):
                conn.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (row["id"],))

    def _role_of(self, conn: sqlite3.Connection, name: str) -> str:
        row = conn.execute("SELECT role FROM users WHERE name = ?", (str(name),)).fetchone()
        if row is None:
            raise ValueError(f"user {str(name)[:80]!r}: no such account")
        return str(row[0])

    @staticmethod
    def _admins(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0])

    def account(self, name: str) -> User | None:
        """The account called ``name`` as a :class:`User`, or None."""
        row = self._one("SELECT name, role FROM users WHERE name = ?", (str(name),))
        return User(row["name"], row["role"]) if row else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The account when ``password`` is right, else None (the same for an unknown name).

        Raises:
            TooManyFailures: :data:`~cowdetect.accounts.MAX_FAILURES` wrong passwords for this name
                within :data:`~cowdetect.accounts.LOCK_SECONDS` (counted for unknown names too, so
                the lock does not tell which names exist).
        """
        name = str(name)[:200]
        self._count_attempt(name)
        row = self._one("SELECT name, role, password_hash FROM users WHERE name = ?", (name,))
        if row and password_matches(row["password_hash"], password):
            with self.connect() as conn:
                conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))
            return User(row["name"], row["role"])
        if row is None:
            password_matches(_DUMMY_HASH, password)
        return None

    def _count_attempt(self, name: str) -> None:
        """Count a login attempt as failed BEFORE its password is checked (a success clears it), in
        one locked transaction: attempts made at the same moment cannot all pass a check that the
        slow Argon2 step has not counted yet. Raises TooManyFailures past the limit."""
        clock = time.time()
        with self.write_lock() as conn:
            # forget failures whose lock ran out, so guessing many names cannot grow the table forever
            conn.execute("DELETE FROM login_failures WHERE last_at <= ?", (clock - LOCK_SECONDS,))
            row = conn.execute("SELECT failures, last_at FROM login_failures WHERE name = ?", (name,)).fetchone()
            if row is not None and row["last_at"] + LOCK_SECONDS <= clock:
                conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))
                row = None
            if row is not None and row["failures"] >= MAX_FAILURES:
                wait = row["last_at"] + LOCK_SECONDS - clock
                raise TooManyFailures(f"too many wrong passwords for {name!r}: try again in "
                                      f"{int(wait // 60) + 1} minutes (or an admin sets a new password)")
            conn.execute("INSERT INTO login_failures(name, failures, last_at) VALUES (?, 1, ?) ON CONFLICT(name) "
                         "DO UPDATE SET failures = failures + 1, last_at = excluded.last_at", (name, clock))

    def session_token(self, user: User) -> str:
        """A signed login token for an account (see :func:`cowdetect.accounts.sign_session`)."""
        row = self._one("SELECT password_hash, sessions FROM users WHERE name = ?", (user.name,))
        if row is None:
            raise ValueError(f"user {user.name!r}: no such account")
        return sign_session(session_secret(self.data_dir), user.name, _stamp(row))

    def end_sessions(self, name: str) -> None:
        """Log an account out everywhere: every token signed for it so far stops working. The
        account's own user or an admin."""
        if name.lower() != self.user.name.lower():
            self.require("users")
        with self.connect() as conn:
            conn.execute("UPDATE users SET sessions = sessions + 1 WHERE name = ?", (name,))

    def session_user(self, token: str) -> User | None:
        """The account a token was signed for, if it is valid, unexpired, and the account still
        exists with the same password; else None."""
        got = read_session(session_secret(self.data_dir), token)
        if got is None:
            return None
        row = self._one("SELECT name, role, password_hash, sessions FROM users WHERE name = ?", (got[0],))
        if row is None or _stamp(row) != got[1]:
            return None
        return User(row["name"], row["role"])

    def acting_for_run(self, run_user: str | None) -> User:
        """Who a job acts as: the user who started its run. A run started by someone whose account
        was removed since is refused (PermissionDenied); runs from before accounts act locally."""
        if run_user is None or run_user.startswith("local:"):
            return User(run_user or self.user.name, "admin")
        account = self.account(run_user)
        if account is None:
            raise PermissionDenied(f"the run was started by {run_user!r}, who no longer has an account")
        return account

    # -- settings -----------------------------------------------------------------------
    def setting(self, key: str) -> str | None:
        """A stored setting (e.g. 'last_backup'), or None."""
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str, conn: sqlite3.Connection | None = None) -> None:
        """Store a setting. Admin only."""
        self.require("settings")
        sql, args = "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", \
            (key, str(value))
        if conn is not None:
            conn.execute(sql, args)
            return
        with self.connect() as own:
            own.execute(sql, args)


def _stamp(row: sqlite3.Row) -> str:
    """What a session token is tied to: the password hash and the "log out everywhere" count."""
    return hash_stamp(f"{row['password_hash']}:{row['sessions']}")
