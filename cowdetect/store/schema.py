"""The database schema: migrations applied in order, the version kept in PRAGMA user_version."""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        file TEXT NOT NULL,
        original_name TEXT,
        width INTEGER NOT NULL CHECK (width > 0),
        height INTEGER NOT NULL CHECK (height > 0),
        split TEXT NOT NULL DEFAULT 'unassigned' CHECK (split IN ('train', 'val', 'test', 'unassigned')),
        labeled INTEGER NOT NULL DEFAULT 0,
        added_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        architecture TEXT NOT NULL,
        classes TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        parent_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        params TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE boxes (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_name TEXT NOT NULL,
        x_min REAL NOT NULL, y_min REAL NOT NULL, x_max REAL NOT NULL, y_max REAL NOT NULL,
        score REAL,
        source TEXT NOT NULL DEFAULT 'ground_truth' CHECK (source IN ('ground_truth', 'model')),
        model_id INTEGER REFERENCES models(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        CHECK (x_max >= x_min AND y_max >= y_min)
    );
    CREATE INDEX boxes_image ON boxes(image_id, source);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'done', 'stopped', 'failed', 'interrupted')),
        iteration INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        pid INTEGER,
        model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        history TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        finished_at TEXT
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        model_id INTEGER REFERENCES models(id) ON DELETE CASCADE,
        model_label TEXT NOT NULL,
        split TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        metrics TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE videos (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        file TEXT NOT NULL,
        original_name TEXT,
        width INTEGER, height INTEGER, fps REAL, frames INTEGER,
        gt_file TEXT,
        added_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    INSERT INTO classes(name) VALUES ('cow');
    """,
    # 2: background jobs (checkpoints, stop requests, progress points) and the active model.
    """
    ALTER TABLE runs ADD COLUMN checkpoint TEXT;
    ALTER TABLE runs ADD COLUMN checkpoint_iteration INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN started_at TEXT;
    ALTER TABLE runs ADD COLUMN device TEXT;
    ALTER TABLE runs ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE run_points (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('train', 'val')),
        iteration INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX run_points_run ON run_points(run_id, kind, iteration);
    ALTER TABLE models ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: labeling — a per-image version for concurrent editors, indexes for paging 10,000s of images.
    """
    ALTER TABLE images ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX images_split ON images(split, id);
    CREATE INDEX images_labeled ON images(labeled, id);
    """,
    # 4: typed rows. The unused per-run history column goes. Model ids are never given out twice
    # (AUTOINCREMENT: a job or a page that names '#3' can never get a later version that reused
    # a deleted one's id), so the table is rebuilt. Names start with a letter (so a name can never
    # be read as an id, see cowdetect.models.resolve), never end in '.pt' (never read as a file)
    # and are not words of the spec grammar: older names that break this become 'v<id>-<name>'.
    # Runs are looked up by status when a job claims its device. A result records the tiling it
    # was computed with (cowdetect.tiling), so tiled and untiled results are cached apart.
    """
    ALTER TABLE runs DROP COLUMN history;
    ALTER TABLE results ADD COLUMN tiles TEXT NOT NULL DEFAULT 'off';
    CREATE TABLE models_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        architecture TEXT NOT NULL,
        classes TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        parent_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        params TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        active INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO models_v4 SELECT id, name, architecture, classes, checkpoint, parent_id, params, created_at, active
        FROM models;
    DROP TABLE models;
    ALTER TABLE models_v4 RENAME TO models;
    UPDATE models SET name = 'v' || id || '-' || substr(name, 1, 80) ||
            CASE WHEN EXISTS (SELECT 1 FROM models other WHERE other.name = 'v' || models.id || '-' ||
                                                                                substr(models.name, 1, 80))
                 THEN '-' || lower(hex(randomblob(3))) ELSE '' END
        WHERE name NOT GLOB '[A-Za-z]*' OR lower(name) LIKE '%.pt'
           OR lower(name) IN ('active', 'pretrained', 'untrained', 'coco');
    CREATE INDEX runs_status ON runs(status, device);
    """,
    # 5: from video to labels. An image may come from a stored video's frame (its index and own
    # timestamp); a perceptual hash finds near-identical images. A model's (or a tracker's) boxes
    # for an image are suggestions, kept apart from ground truth, one set per image; when the
    # image is saved, how its suggestions were edited is the labeling effort of their source.
    """
    ALTER TABLE images ADD COLUMN video_id INTEGER REFERENCES videos(id) ON DELETE SET NULL;
    ALTER TABLE images ADD COLUMN frame_index INTEGER;
    ALTER TABLE images ADD COLUMN frame_time REAL;
    ALTER TABLE images ADD COLUMN phash TEXT;
    CREATE UNIQUE INDEX images_frame ON images(video_id, frame_index) WHERE video_id IS NOT NULL;
    CREATE TABLE suggestion_sets (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        score_threshold REAL,
        uncertainty REAL,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX suggestion_sets_run ON suggestion_sets(run_id);
    CREATE INDEX suggestion_sets_uncertainty ON suggestion_sets(uncertainty);
    CREATE TABLE suggestions (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES suggestion_sets(image_id) ON DELETE CASCADE,
        class_name TEXT NOT NULL,
        x_min REAL NOT NULL, y_min REAL NOT NULL, x_max REAL NOT NULL, y_max REAL NOT NULL,
        score REAL,
        CHECK (x_max >= x_min AND y_max >= y_min)
    );
    CREATE INDEX suggestions_image ON suggestions(image_id);
    CREATE TABLE label_effort (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        suggested INTEGER NOT NULL,
        unchanged INTEGER NOT NULL,
        changed INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        added INTEGER NOT NULL,
        saved_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX label_effort_model ON label_effort(model_id, source);
    """,
    # 6: a shared server. Accounts with a role (cowdetect.accounts; `sessions` counts "log out
    # everywhere", failed logins per name slow down guessing), who did what (activity; a run and
    # an image remember who started / added it), and a few settings (the last backup).
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'labeler', 'trainer', 'admin')),
        password_hash TEXT NOT NULL,
        sessions INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE login_failures (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL
    );
    CREATE TABLE activity (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ALTER TABLE runs ADD COLUMN user TEXT;
    ALTER TABLE images ADD COLUMN added_by TEXT;
    """,
    # 7: counting lines and zones drawn on a video (cowdetect.counting.geometry_to_dict JSON), kept
    # with it so that every tracking run of the video, whatever its tracker settings, counts on them.
    """
    ALTER TABLE videos ADD COLUMN geometry TEXT NOT NULL DEFAULT '{}';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _version(conn: sqlite3.Connection, db_path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ValueError(f"{db_path}: schema version {version} is newer than this cowdetect understands "
                         f"({SCHEMA_VERSION}); upgrade cowdetect")
    return version


class DatabaseUnusable(sqlite3.DatabaseError):
    """The data folder's database cannot be opened or brought up to date; the message names the
    file, SQLite's reason and what to do about it."""


# SQLite's reason (lower case) -> what the user can do about it
_DATABASE_HINTS = (
    ("not a database", "the file is damaged or not a cowdetect database; restore a backup into a new folder"),
    ("malformed", "the file is damaged; restore a backup into a new folder"),
    ("readonly", "the data folder or its database is read-only; use a writable data folder"),
    ("unable to open", "the data folder cannot be read or written, or the database's name is taken by a folder"),
    ("locked", "another process is writing to it; try again when it is done"),
    ("disk i/o", "the disk failed to read or write"),
    ("full", "the disk is full; free some space"),
)


def describe_database_error(exc: BaseException, db_path: Path) -> str:
    """One sentence for a SQLite error on ``db_path``: the file, SQLite's reason and, where known, the remedy."""
    reason = str(exc) or type(exc).__name__
    hint = next((text for key, text in _DATABASE_HINTS if key in reason.lower()), None)
    return f"database {db_path}: {reason}" + (f" ({hint})" if hint else "")


def migrate(db_path: Path) -> None:
    """Bring the database up to :data:`SCHEMA_VERSION`, one migration per transaction.

    Two processes opening a new data folder at once would both apply the same migration
    (the second fails on a duplicate column), so migrating holds a lock file beside the
    database and reads the version again once it holds it. An up-to-date database is only read.

    Raises:
        DatabaseUnusable: the file is not a database or is damaged, is read-only, or stays locked.
        ValueError: the schema is newer than this cowdetect understands.
    """
    try:
        _migrate(db_path)
    except DatabaseUnusable:
        raise
    except sqlite3.DatabaseError as exc:  # SQLite's own words lack the file's name and the remedy
        raise DatabaseUnusable(describe_database_error(exc, db_path)) from exc


def _migrate(db_path: Path) -> None:
    existed = db_path.is_file() and db_path.stat().st_size > 0
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        if existed and _version(conn, db_path) == SCHEMA_VERSION:
            return
        with open(db_path.with_name(db_path.name + ".migrate-lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # WAL lets the app read while a CLI or job process writes.
            conn.execute("PRAGMA journal_mode = WAL")
            for number in range(_version(conn, db_path), SCHEMA_VERSION):
                conn.executescript("BEGIN;" + MIGRATIONS[number] + f"; PRAGMA user_version = {number + 1}; COMMIT;")
    finally:
        conn.close()
