"""Runs (jobs), their progress points, and evaluation results."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

from .base import StoreBase
from .rows import ACTIVE, RUN_STATUSES, ResultRecord, RunRecord, result_row, run_row

_RUN_FIELDS = {"status", "iteration", "error", "model_id", "finished_at", "total", "pid", "checkpoint",
               "checkpoint_iteration", "stop_requested", "started_at", "device", "metrics", "params"}


def now() -> str:
    """UTC time as the database stores it, to the millisecond (so the order of two jobs' start and
    end can be read from their rows)."""
    clock = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(clock)) + f".{int(clock * 1000) % 1000:03d}"


class RunsMixin(StoreBase):
    """Jobs as rows: settings, status, progress, the device they hold; and their results."""

    def add_run(self, kind: str, params: dict[str, Any], total: int = 0) -> tuple[int, bool]:
        """Queue a job; returns (run id, created). An identical job still queued or running is
        returned instead of a second one (two clicks on Start make one job), atomically."""
        from ..accounts import run_action

        self.require(run_action(kind))  # type: ignore[attr-defined]
        text = json.dumps(params, sort_keys=True)
        with self.write_lock() as conn:
            for row in conn.execute("SELECT id, params FROM runs WHERE kind = ? AND status IN (?, ?)", (kind, *ACTIVE)):
                if json.dumps(json.loads(row["params"]), sort_keys=True) == text:
                    return int(row["id"]), False
            cur = conn.execute("INSERT INTO runs(kind, params, total, status, user) VALUES (?,?,?,'queued',?)",
                               (kind, json.dumps(params), int(total), self.user.name))
            self._log(conn, f"start {kind} run", f"run #{cur.lastrowid}", "")  # type: ignore[attr-defined]
            return int(cur.lastrowid), True  # type: ignore[arg-type]

    def _require_run(self, run_id: int) -> None:
        """Raise PermissionDenied unless this store's user may run jobs of the run's kind."""
        from ..accounts import run_action

        row = self._one("SELECT kind FROM runs WHERE id = ?", (int(run_id),))
        if row is None:
            raise ValueError(f"run {run_id}: no such run")
        self.require(run_action(row["kind"]))  # type: ignore[attr-defined]

    def mark_run_interrupted(self, run_id: int, error: str, alive: Callable[[int | None], bool]) -> bool:
        """Record that a queued or running run's process is gone (``alive(pid)`` is false, checked
        under the write lock); returns whether it was marked. Anyone's page may notice a dead run,
        so this one transition needs no role: it states a fact and starts nothing."""
        with self.write_lock() as conn:
            row = conn.execute("SELECT pid FROM runs WHERE id = ? AND status IN (?, ?)", (int(run_id), *ACTIVE)).fetchone()
            if row is None or not row["pid"] or alive(row["pid"]):
                return False
            conn.execute("UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? WHERE id = ?",
                         (error[:2000], now(), int(run_id)))
        return True

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Update fields of a run (status, iteration, error, pid, checkpoint, metrics, ...); needs the
        role that may start runs of its kind (its worker acts as the user who started it)."""
        bad = set(fields) - _RUN_FIELDS
        if bad:
            raise ValueError(f"run fields: expected some of {sorted(_RUN_FIELDS)}, got {sorted(bad)}")
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"status: expected one of {list(RUN_STATUSES)}, got {fields['status']!r}")
        for key in ("metrics", "params"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        self._require_run(run_id)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), int(run_id)))

    def take_run(self, run_id: int, pid: int, alive: Callable[[int | None], bool]) -> int | None:
        """Record ``pid`` as the worker of run ``run_id`` unless another live process already is;
        returns None when taken, else that process's pid. Atomic across processes (write lock)."""
        self._require_run(run_id)
        with self.write_lock() as conn:
            row = conn.execute("SELECT pid FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if row is None:
                raise ValueError(f"run {run_id}: no such run")
            if row["pid"] and row["pid"] != pid and alive(row["pid"]):
                return int(row["pid"])
            conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (pid, int(run_id)))
        return None

    def claim_device(self, run_id: int, device: str, pid: int, alive: Callable[[int | None], bool]) -> int | None:
        """Mark run ``run_id`` running on ``device`` for process ``pid`` unless another live run
        holds the device; returns None when claimed, else the id of the run that holds it.

        Check and claim happen under the database's write lock, so of several processes
        claiming at once exactly one wins — "one job per device" cannot be broken by timing.
        """
        self._require_run(run_id)
        with self.write_lock() as conn:
            holders = conn.execute("SELECT id, pid FROM runs WHERE status = 'running' AND device = ? AND id != ?",
                                   (device, int(run_id))).fetchall()
            for holder in holders:
                if alive(holder["pid"]):
                    return int(holder["id"])
            row = conn.execute("SELECT started_at FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            conn.execute("UPDATE runs SET status = 'running', device = ?, pid = ?, started_at = ? WHERE id = ?",
                         (device, pid, row["started_at"] or now(), int(run_id)))
        return None

    def runs(self, kind: str | None = None) -> list[RunRecord]:
        """All runs (of one kind), newest first."""
        sql, args = "SELECT * FROM runs", []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        with self.connect() as conn:
            return [run_row(r) for r in conn.execute(sql + " ORDER BY id DESC", args)]

    def run(self, run_id: int) -> RunRecord:
        """One run; ValueError when there is none."""
        row = self._one("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if row is None:
            raise ValueError(f"run {run_id}: no such run")
        return run_row(row)

    def add_points(self, run_id: int, records: Sequence[dict[str, Any]], kind: str = "train") -> None:
        """Append progress records (each with an ``iteration``) to a run."""
        self._require_run(run_id)
        with self.connect() as conn:
            conn.executemany("INSERT INTO run_points(run_id, kind, iteration, record) VALUES (?,?,?,?)",
                             [(int(run_id), kind, int(r["iteration"]), json.dumps(r)) for r in records])

    def points(self, run_id: int, kind: str = "train", after: int = 0) -> list[dict[str, Any]]:
        """A run's progress records of one kind with iteration > ``after``, in order."""
        with self.connect() as conn:
            rows = conn.execute("SELECT record FROM run_points WHERE run_id = ? AND kind = ? AND iteration > ? "
                                "ORDER BY iteration, id", (int(run_id), kind, int(after))).fetchall()
        return [json.loads(r[0]) for r in rows]

    def drop_points_after(self, run_id: int, iteration: int) -> None:
        """Forget progress past ``iteration`` (a resume repeats those iterations from a checkpoint)."""
        self._require_run(run_id)
        with self.connect() as conn:
            conn.execute("DELETE FROM run_points WHERE run_id = ? AND iteration > ?", (int(run_id), int(iteration)))

    # -- evaluation results -------------------------------------------------------------
    def add_result(self, model_label: str, split: str, dataset_hash: str, metrics: dict[str, Any],
                   model_id: int | None = None, tiles: str = "off") -> int:
        """Keep an evaluation result of a stored version (``model_id``) or of a model that is not
        stored (``model_id`` None: the pretrained detector, a checkpoint file), named by ``model_label``."""
        self.require("evaluate")  # type: ignore[attr-defined]
        with self.connect() as conn:
            cur = conn.execute("INSERT INTO results(model_id, model_label, split, dataset_hash, metrics, tiles) "
                               "VALUES (?,?,?,?,?,?)", (model_id, model_label, split, dataset_hash,
                                                        json.dumps(metrics), tiles))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def cached_result(self, model_label: str, split: str, dataset_hash: str,
                      model_id: int | None = None, tiles: str = "off") -> ResultRecord | None:
        """The newest result for this model (by id when stored, else by label) on exactly this
        split content (``dataset_hash``), or None: re-opening a page never recomputes."""
        who, key = ("model_id = ?", int(model_id)) if model_id is not None else \
            ("model_id IS NULL AND model_label = ?", model_label)
        row = self._one(f"SELECT * FROM results WHERE {who} AND split = ? AND dataset_hash = ? AND tiles = ? "
                        "ORDER BY id DESC LIMIT 1", (key, split, dataset_hash, tiles))
        return result_row(row) if row is not None else None

    def results(self) -> list[ResultRecord]:
        """All evaluation results, newest first."""
        with self.connect() as conn:
            return [result_row(r) for r in conn.execute("SELECT * FROM results ORDER BY id DESC")]
