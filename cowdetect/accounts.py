"""Who may do what: roles, the actions each allows, password hashes and signed login sessions.

Four roles, each allowing what the one before it does and more:

    viewer   read everything
    labeler  + import images and videos, label, move splits, pre-label
    trainer  + train, evaluate, track, set the active model, rename models
    admin    + users, deletions, backups and settings

The checks live in the library (:meth:`cowdetect.store.Store.require`, called by the store's own
write methods), so a page, a job and the Python API are held to the same rule; hiding a button
is only a courtesy. Passwords are hashed with Argon2id (``argon2-cffi``: the maintained binding of
the Password Hashing Competition winner, with salt and parameters in the hash string); a login
session is an HMAC-signed token of (user, expiry) under a secret kept in the data folder with
owner-only permissions. This module never imports Streamlit.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "labeler", "trainer", "admin")

# action -> the least role that may do it (a role may do what every lower role may)
ACTIONS: dict[str, str] = {
    "read": "viewer",
    "import": "labeler", "label": "labeler", "prelabel": "labeler",
    "train": "trainer", "evaluate": "trainer", "track": "trainer", "manage_models": "trainer",
    "delete": "admin", "users": "admin", "backup": "admin", "settings": "admin",
}
# the action a background job of each kind needs (starting, stopping or resuming it)
RUN_ACTIONS: dict[str, str] = {"train": "train", "evaluate": "evaluate", "track": "track", "prelabel": "prelabel",
                               "frames": "import", "live": "track", "track-many": "track"}


def run_action(kind: str) -> str:
    """The action starting, stopping or writing a job of ``kind`` needs; a kind nobody listed needs
    an admin (the strictest rule, so a new job kind is never open by mistake)."""
    return RUN_ACTIONS.get(kind, "settings")


NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 accepts more; a 1 MB "password" is an attack, not a password
SESSION_SECONDS = 7 * 24 * 3600
# after this many wrong passwords for one name, that name waits LOCK_SECONDS from the last one
# (Argon2 makes each guess cost ~0.1 s; this makes an online guesser's rate about 5 per 15 minutes)
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
SECRET_FILE = "secret.key"


class PermissionDenied(PermissionError):
    """The user's role does not allow the action (the message names user, role and action)."""


class TooManyFailures(PermissionError):
    """Too many wrong passwords for one name lately (the message says how long to wait)."""


@dataclass(frozen=True)
class User:
    """Someone acting on the store: a name (recorded in the activity log) and a role."""

    name: str
    role: str

    def may(self, action: str) -> bool:
        """Whether this user's role allows ``action`` (a key of :data:`ACTIONS`)."""
        if action not in ACTIONS:
            raise ValueError(f"action: expected one of {sorted(ACTIONS)}, got {action!r}")
        return ROLES.index(self.role) >= ROLES.index(ACTIONS[action])


def local_user() -> User:
    """Who works without an account: a person at this machine's shell or a loopback-only app.

    Whoever can run the CLI on the server can open the data folder's files anyway, so the CLI and
    the local app act as admin; the activity log names them by their login.
    """
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        login = str(os.getuid())
    return User(f"local:{login}", "admin")


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else ValueError."""
    if role not in ROLES:
        raise ValueError(f"role: expected one of {list(ROLES)}, got {role!r}")
    return role


def check_name(name: str) -> str:
    """``name`` if it is a valid account name (a letter, then up to 63 of A-Z a-z 0-9 _ . @ -), else ValueError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"user name: expected a letter then up to 63 letters, digits or _.@-, got {str(name)[:80]!r}")
    return name


def check_password(password: str) -> str:
    """``password`` if it has 8 to 1024 characters, else ValueError (which never echoes it)."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"password: expected {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    """An Argon2id hash string (salt and cost parameters included) of a checked password."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(check_password(password))


def password_matches(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches an Argon2 hash; False (never an exception) for any mismatch."""
    from argon2 import PasswordHasher
    from argon2.exceptions import Argon2Error, InvalidHashError

    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    try:
        return PasswordHasher().verify(stored_hash, password)
    except (Argon2Error, InvalidHashError):
        return False


def session_secret(data_dir: str | Path) -> bytes:
    """The data folder's session secret (32 random bytes), made on first use with owner-only
    permissions (0600); one that others can read is refused, as it would let them sign sessions."""
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        # written whole to a private temporary file, then linked into place: two processes making
        # it at once both end up reading the one that won, never a half-written file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mkstemp files are 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path}: readable by others; run: chmod 600 {path}")
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ValueError(f"{path}: damaged (under 32 bytes); delete it to make a new one (everyone logs in again)")
    return secret


def write_private(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically with owner-only permissions (0600) from the start."""
    from .files import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), private=True)


def source_key(data_dir: str | Path, secret_text: str) -> str:
    """A short keyed fingerprint of ``secret_text`` (HMAC-SHA256 under the data folder's session
    secret): tells two secrets apart in stored settings without revealing or allowing a guess at them."""
    return hmac.new(session_secret(data_dir), secret_text.encode(), hashlib.sha256).hexdigest()[:16]


def _signature(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def sign_session(secret: bytes, name: str, stamp: str, seconds: int = SESSION_SECONDS) -> str:
    """A login token for ``name``: "name|expiry|stamp|hmac". ``stamp`` fingerprints the account's
    password hash and its "log out everywhere" count, so a new password, a log out or removing the
    account ends its sessions."""
    payload = f"{check_name(name)}|{int(time.time()) + int(seconds)}|{stamp}"
    return f"{payload}|{_signature(secret, payload)}"


def read_session(secret: bytes, token: str) -> tuple[str, str] | None:
    """(user name, stamp) of a valid, unexpired token; None for anything else."""
    if not isinstance(token, str) or token.count("|") != 3 or len(token) > 512:
        return None
    payload, signature = token.rsplit("|", 1)
    if not hmac.compare_digest(_signature(secret, payload), signature):
        return None
    name, expiry, stamp = payload.split("|")
    if not expiry.isdigit() or int(expiry) < time.time():
        return None
    return name, stamp


def hash_stamp(password_hash: str) -> str:
    """A short fingerprint of a password hash (what a session token is tied to)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]
