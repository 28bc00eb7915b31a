"""The job machinery: rows, worker processes, the device queue, stop / resume, dispatch by kind.

A job is a row in the store's ``runs`` table (kind, settings, status, progress). It runs in
its own process — ``python -m cowdetect worker RUN_ID``, started by :func:`start_worker` — or
in the foreground of a CLI command; either way :func:`run_job` calls the kind's job function.
Pages only read rows and write commands (stop, resume). A run whose process is gone is marked
``interrupted`` (:func:`mark_interrupted`), never left "running".
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..accounts import run_action
from ..files import pid_alive
from ..store import ACTIVE, RunRecord, Store, now

Log = Callable[[str], None]
# Each kind's job function, imported when a job of that kind runs (tracking pulls in Norfair).
RUNNERS = {"train": "cowdetect.jobs.train:run_training", "track": "cowdetect.jobs.track:run_tracking",
           "evaluate": "cowdetect.jobs.evaluate:run_evaluation", "prelabel": "cowdetect.jobs.prelabel:run_prelabel",
           "frames": "cowdetect.jobs.frames:run_frames", "live": "cowdetect.jobs.live:run_live",
           "track-many": "cowdetect.jobs.trackmany:run_track_many"}
# How often a waiting job looks whether its device is free.
POLL_SECONDS = 0.5


def stderr_log(message: str) -> None:
    """The default ``log`` of job functions: one line to stderr (the worker's log file)."""
    print(message, file=sys.stderr, flush=True)


def mark_interrupted(store: Store) -> list[int]:
    """Mark queued/running runs whose process is gone as ``interrupted``; returns their ids."""
    gone = [r.id for r in store.runs() if r.status in ACTIVE and r.pid and not pid_alive(r.pid)]
    return [run_id for run_id in gone
            if store.mark_run_interrupted(run_id, "the worker process ended unexpectedly", pid_alive)]


def runs_table(store: Store) -> list[dict[str, Any]]:
    """Runs for display (statuses refreshed first), newest first: id, kind, status, progress, model, times."""
    mark_interrupted(store)
    return [{"id": r.id, "kind": r.kind, "status": r.status, "iteration": r.iteration, "total": r.total,
             "checkpoint_iteration": r.checkpoint_iteration, "model_id": r.model_id, "created_at": r.created_at,
             "finished_at": r.finished_at, "error": r.error} for r in store.runs()]


def create_run(store: Store, kind: str, settings: dict[str, Any], total: int) -> int:
    """Queue a run of ``kind`` with checked ``settings``; an identical run still queued or running
    is returned instead (two clicks on Start make one job)."""
    if kind not in RUNNERS:
        raise ValueError(f"kind: expected one of {sorted(RUNNERS)}, got {kind!r}")
    mark_interrupted(store)
    run_id, _ = store.add_run(kind, settings, total=total)
    return run_id


def start_worker(store: Store, run_id: int) -> int | None:
    """Run a queued run in a new background process; returns its pid, or None when a live
    process already has it (a second click does not start a second worker)."""
    run = store.run(run_id)
    store.require(run_action(run.kind))
    if run.pid and pid_alive(run.pid):
        return None
    folder = store.inside(Path("runs") / f"run-{run_id}")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "worker.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "worker", str(run_id), "--data-dir",
                                 str(store.data_dir)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    store.update_run(run_id, pid=proc.pid)
    return proc.pid


def request_stop(store: Store, run_id: int) -> None:
    """Ask a run to stop: it saves what it has and ends as ``stopped``. A queued run without a
    live worker is stopped at once."""
    run = store.run(run_id)
    store.require(run_action(run.kind))
    if run.status == "queued" and not pid_alive(run.pid):
        store.update_run(run_id, status="stopped", finished_at=now())
    elif run.status in ACTIVE:
        store.update_run(run_id, stop_requested=1)


def prepare_resume(store: Store, run_id: int, background: bool = False) -> None:
    """Queue a stopped, failed or interrupted run again (training continues from its last checkpoint).
    ``background``: for a worker process (a page's Resume), which cannot host a run on several
    machines (it needs the rendezvous endpoint only node 0's command line gives): such a run is refused."""
    mark_interrupted(store)
    run = store.run(run_id)
    store.require(run_action(run.kind))
    if run.status in ACTIVE:
        raise ValueError(f"run {run_id} is already {run.status}")
    if run.status == "done":
        raise ValueError(f"run {run_id} is done; start a new run to go further")
    nodes = int(run.params.get("nnodes", 1)) if run.kind == "train" else 1
    if background and nodes > 1:
        raise ValueError(f"run {run_id} trains on {nodes} machines: resume it on machine 0 with python -m "
                         f"cowdetect train --resume {run_id} --rdzv-endpoint HOST:PORT")
    store.update_run(run_id, status="queued", stop_requested=0, error=None, finished_at=None, pid=None)


def start(store: Store, run_id: int, kind: str, log: Log) -> RunRecord:
    """Make this process the worker of queued run ``run_id`` and wait for its device.

    Refuses a run of another kind, one that is not queued or running, and one that another
    live process owns. Returns the run's row: ``running``, or ``stopped`` if a stop came
    while it waited for its turn.
    """
    run = store.run(run_id)
    if run.kind != kind:
        raise ValueError(f"run {run_id} is a {run.kind} run, not a {kind} run")
    if run.status not in ACTIVE:
        again = {"train": f"train --resume {run_id}", "prelabel": f"prelabel --resume {run_id}"}.get(kind)
        raise ValueError(f"run {run_id} is {run.status}; " + (f"continue it with: python -m cowdetect {again}"
                         if again else "start a new run (or Resume it on its page)"))
    me = os.getpid()
    owner = store.take_run(run_id, me, pid_alive)
    if owner is not None:
        raise ValueError(f"run {run_id} is already being run by process {owner}")
    device, told = run.params["device"], False
    while True:
        if store.run(run_id).stop_requested:  # a stop that came before the start, or while waiting
            store.update_run(run_id, status="stopped", finished_at=now())
            break
        holder = store.claim_device(run_id, device, me, pid_alive)
        if holder is None:
            break
        if not told:
            log(f"run {run_id} waits for run {holder} on {device}")
            told = True
        time.sleep(POLL_SECONDS)
    return store.run(run_id)


def fail(store: Store, run_id: int, message: str) -> None:
    """End a run as ``failed`` with the reason (cut to 2,000 characters)."""
    store.update_run(run_id, status="failed", error=message[:2000], finished_at=now())


@contextlib.contextmanager
def recorded(store: Store, run_id: int) -> Iterator[None]:
    """End the run as ``interrupted`` on Ctrl+C / SIGTERM and ``failed`` (with the reason) on any
    other error, then re-raise. A run that already ended (stored ``done``, then a SIGTERM before the
    process exits) keeps its ending: a Resume of it would store its version twice."""
    try:
        yield
    except KeyboardInterrupt:
        if store.run(run_id).status in ACTIVE:
            store.update_run(run_id, status="interrupted", error="interrupted (Ctrl+C or SIGTERM)",
                             finished_at=now())
        raise
    except BaseException as exc:
        if store.run(run_id).status in ACTIVE:
            fail(store, run_id, str(exc) or type(exc).__name__)
        raise


class Ticker:
    """Progress written about once a second (not per frame or batch), and the stop request read then."""

    def __init__(self, store: Store, run_id: int, every: float = 1.0) -> None:
        self.store, self.run_id, self.every, self.last = store, run_id, every, 0.0

    def due(self, done: int, total: int) -> bool:
        """True when progress should be written now (always at the end)."""
        if done == total or time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            return True
        return False

    def report(self, done: int, total: int) -> bool:
        """Write ``done`` of ``total``; returns False when a stop was requested."""
        self.store.update_run(self.run_id, iteration=done, total=max(total, done))
        return not self.store.run(self.run_id).stop_requested

    def poll(self, done: int, total: int, *, final: bool = True) -> bool:
        """Write progress when due (:meth:`due`); False when a stop was requested then. ``final``:
        ``done == total`` is the end (always written); False where the caller writes the end
        itself, e.g. a loop polled while its last result is still being stored."""
        if not self.due(done, total if final else total + 1):
            return True
        return self.report(done, total)


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a terminated worker marks its run interrupted."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def run_job(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run any queued run by its kind (what ``python -m cowdetect worker RUN_ID`` does)."""
    run = store.run(run_id)
    kind = run.kind
    # a worker acts as whoever started the run: their role was checked when it was queued, and
    # what the job stores (a model, suggestions) is theirs in the activity log
    store = store.as_user(store.acting_for_run(run.user))  # type: ignore[assignment]
    if kind not in RUNNERS:
        raise ValueError(f"run {run_id}: unknown kind {kind!r}; expected one of {sorted(RUNNERS)}")
    module, function = RUNNERS[kind].split(":")
    return getattr(importlib.import_module(module), function)(store, run_id, log=log)
