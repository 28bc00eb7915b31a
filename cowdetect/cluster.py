"""Work spread over a Ray cluster: many videos to track, many images to pre-label. Ray lives here.

One writer: the driver (a job's worker process, or the CLI in the foreground) is the only process
that touches the data folder. Ray tasks get bytes — a video, a model checkpoint, kept detections,
images — and return bytes and numbers; they never open the store, so SQLite keeps one writer and a
worker on another machine needs no shared disk. cowdetect's own code travels to the workers with
the job (Ray's ``py_modules``); its dependencies must already be installed there (requirements.txt).

Ray is optional (requirements-ray.txt): nothing here imports it until a job asks for a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from .files import remove_abandoned

INSTALL_HINT = ("Ray is not installed (an optional extra for clusters): "
                ".venv/bin/python -m pip install -r requirements-ray.txt")
# A cluster address that does not answer within this is said at once instead of Ray's own long wait.
CONNECT_SECONDS = 5.0
# Ray re-runs a task this many times when its worker process dies (kill -9, a lost node); an
# exception raised by our own code is not retried (a broken video stays broken).
RETRIES = 2
# How often the driver looks at progress and the stop request.
POLL_SECONDS = 0.5
MAX_WORKERS = 1024
_PACKAGE = Path(__file__).resolve().parent


def ray_installed() -> bool:
    """Whether the optional Ray extra is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """The ``ray`` module, or ValueError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return ray


def check_address(address: str | None) -> str | None:
    """``address`` of a Ray cluster in one form: None for a local Ray on this machine (None, '' or
    'local'), else ``HOST:PORT`` of a running cluster's head (its GCS port, 6379 by default), which
    this machine must have joined (``ray start --address HOST:PORT``). Ray Client (``ray://``) needs
    packages requirements-ray.txt does not install, so it is refused.

    Raises:
        ValueError: anything else (the message shows the forms).
    """
    text = (address or "").strip()
    if text in ("", "local"):
        return None
    # a host name or IPv4 address, or an IPv6 one in brackets, and a port: nothing else (no user@,
    # path, query or blank), so what is probed is what Ray is given
    form = re.fullmatch(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})", text)
    if form is None or not 0 < int(form.group(1)) < 65536:
        raise ValueError(f"--ray: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379) or 'local', "
                         f"got {address!r}")
    return text


def cluster_settings(ray: str | None = None, workers: int | None = None, threads: int = 1,
                     gpu_fraction: float | None = None) -> dict[str, Any]:
    """A job's checked cluster settings (the arguments of :func:`connect`): ``ray`` an address
    (:func:`check_address`), ``workers`` the task slots of a local Ray (1–1024; None: one per core),
    ``threads`` each task's CPU threads (1–64), ``gpu_fraction`` each task's share of a GPU (0–1;
    None: half of one where the cluster has GPUs).

    Raises:
        ValueError: any of those out of range (nothing is started).
    """
    for name, value, low, high in (("workers", workers, 1, MAX_WORKERS), ("threads", threads, 1, 64)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise ValueError(f"{name}: expected a whole number from {low} to {high}, got {value!r}")
    if gpu_fraction is not None and (isinstance(gpu_fraction, bool) or not isinstance(gpu_fraction, (int, float))
                                     or not 0 <= gpu_fraction <= 1):
        raise ValueError(f"gpu_fraction: expected a number from 0 to 1, got {gpu_fraction!r}")
    address = check_address(ray)
    if address is None and workers is not None and workers > (os.cpu_count() or 1):
        raise ValueError(f"workers: expected 1 to {os.cpu_count() or 1} tasks at once on this machine's cores (each "
                         f"is a whole torch process of about a GB), got {workers}")
    if address is None and gpu_fraction and not _local_gpus():  # said now, not after the work is queued
        raise ValueError(f"gpu_fraction: {gpu_fraction:g} of a GPU per task, but this machine (a local Ray) has no GPU")
    return {"address": address, "workers": workers, "threads": threads,
            "gpu_fraction": None if gpu_fraction is None else float(gpu_fraction)}


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


ADDRESS_ENV = "COWDETECT_RAY_ADDRESS"


def allowed_address(store: Any, address: str | None) -> str | None:
    """``address`` (checked, :func:`check_address`) when ``store``'s user may send work there: a
    local Ray and the cluster the admin named in ``$COWDETECT_RAY_ADDRESS`` are anyone's who may run
    the job; any other address needs the admin role, since the job ships the videos, images and
    model to whatever answers there.

    Raises:
        PermissionDenied: another address for a non-admin.
    """
    from .accounts import PermissionDenied

    address = check_address(address)
    if address is None:
        return address
    try:
        configured = check_address(os.environ.get(ADDRESS_ENV) or None)
    except ValueError:
        raise ValueError(f"{ADDRESS_ENV}: expected HOST:PORT of a Ray cluster's head, got "
                         f"{os.environ.get(ADDRESS_ENV)!r}") from None
    if address == configured:
        return address
    try:
        store.require("settings")
    except PermissionDenied:
        raise PermissionDenied(f"Ray cluster: only an admin may send work to a cluster other than this server's "
                               f"own Ray or the one in {ADDRESS_ENV}") from None
    return address


def require_reachable(address: str | None, seconds: float = CONNECT_SECONDS) -> None:
    """Raise ValueError within about ``seconds`` unless a gRPC server (what a Ray head's GCS port
    is) answers at ``HOST:PORT``: Ray itself would retry for minutes, also at a port where something
    else listens. A local Ray (None) is left to Ray."""
    if address is None:
        return
    parts = urlsplit(f"//{address}")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=seconds) as conn:
            conn.settimeout(seconds)
            # HTTP/2's client preface and an empty SETTINGS frame: a gRPC server's first frame is SETTINGS
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = b""
            while len(head) < 9:  # a frame header may come in pieces
                piece = conn.recv(9 - len(head))
                if not piece:
                    break
                head += piece
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ValueError(f"no Ray cluster answers at {address} ({reason} within {seconds:g} s): start one there "
                         f"with `ray start --head`, or leave out --ray for a local Ray on this machine") from None
    if len(head) < 9 or head[3] != 0x04:
        raise ValueError(f"something answers at {address}, but not a Ray cluster's head (no gRPC): give the port "
                         f"`ray start --head` printed (6379 by default)")


def job_cluster(store: Any, ray: str | None, workers: int | None = None, threads: int = 1,
                gpu_fraction: float | None = None) -> dict[str, Any]:
    """A job's cluster settings, checked before anything is stored: the arguments
    (:func:`cluster_settings`), the user's right to the address (:func:`allowed_address`) and a
    head answering there (:func:`require_reachable`).

    Raises:
        ValueError: a bad setting, or nothing (or no Ray) answering at the address.
        PermissionDenied: an address only an admin may use.
    """
    cluster = cluster_settings(allowed_address(store, ray), workers, threads, gpu_fraction)
    require_reachable(cluster["address"])
    return cluster


@dataclass(frozen=True)
class Cluster:
    """A connected Ray: the module, where it runs and the resources each task asks for."""

    ray: Any
    address: str | None
    cpus_per_task: float
    gpus_per_task: float

    @property
    def device(self) -> str:
        """Where tasks run their detector: 'cuda' when they hold a share of a GPU, else 'cpu'."""
        return "cuda" if self.gpus_per_task > 0 else "cpu"

    def slots(self) -> int:
        """How many tasks the cluster runs at once (at least 1)."""
        resources = self.ray.cluster_resources()
        by_cpu = resources.get("CPU", 1) / self.cpus_per_task
        by_gpu = resources.get("GPU", 0) / self.gpus_per_task if self.gpus_per_task else by_cpu
        return max(1, int(min(by_cpu, by_gpu)))

    def put(self, value: Any) -> Any:
        """``value`` into the cluster's object store once (a reference every task can take)."""
        return self.ray.put(value)

    def get(self, ref: Any) -> Any:
        """What a task or actor call returned (waits for it)."""
        return self.ray.get(ref)

    def remote(self, function: Callable[..., Any]) -> Any:
        """``function`` as a Ray task with this cluster's resources and retries."""
        return self.ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=RETRIES,
                               retry_exceptions=False)(function)


@contextlib.contextmanager
def connect(address: str | None, workers: int | None = None, threads: int = 1,
            gpu_fraction: float | None = None) -> Iterator[Cluster]:
    """A Ray session for one job, shut down at the end.

    ``address``: :func:`check_address`'s forms (None starts a local Ray with ``workers`` task slots,
    default: one per core; never the cluster ``$RAY_ADDRESS`` names). Each task gets ``threads`` CPU threads (torch's) and, with
    ``gpu_fraction`` > 0, that share of a GPU; None: 0.5 when the cluster has GPUs (two tasks share one),
    else 0.

    Raises:
        ValueError: Ray not installed, the address malformed or not answering, a GPU share asked of a
            cluster without GPUs.
    """
    ray = import_ray()
    address = check_address(address)
    require_reachable(address)
    env = {"py_modules": [str(_PACKAGE)], "env_vars": {"COWDETECT_THREADS": str(threads),
                                                       "OMP_NUM_THREADS": str(threads)}}
    # Ray's own INFO lines (started, pushing the package) would bury the job's; its errors still show
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "runtime_env": env,
                               "logging_level": logging.ERROR}
    if address is None:
        options["num_cpus"] = (workers or os.cpu_count() or 1) * threads
    try:  # one try from before init: whatever happens, Ray is shut down and our handlers are back
        with _signals_held(ray) as signalled:
            try:
                # 'local' starts a Ray here: None would join $RAY_ADDRESS or the last `ray start` on this machine
                ray.init(address=address or "local", **options)
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                if not signalled:
                    raise ValueError(f"could not start or reach Ray at {address or 'this machine'}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            except Exception:
                if not signalled:  # signalled: the signal is what the user asked for, not this failure
                    raise
        if signalled:
            raise KeyboardInterrupt  # what Ctrl+C is, and our handler makes of SIGTERM: the run ends "interrupted"
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpu_fraction is None:
            gpu_fraction = 0.5 if gpus else 0.0
        if gpu_fraction > 0 and not gpus:
            raise ValueError(f"--gpu-fraction {gpu_fraction:g}: the Ray cluster at {address or 'this machine'} "
                             f"has no GPU")
        yield Cluster(ray, address, float(threads), float(gpu_fraction))
    finally:
        try:
            ray.shutdown()
        finally:
            _reinstall_handlers()


@contextlib.contextmanager
def _signals_held(ray: Any) -> Iterator[list[int]]:
    """Hold a SIGTERM or Ctrl+C that arrives while Ray starts: the yielded list gets its number, to
    act on after.

    Why: ``ray.init`` installs a handler that calls ``sys.exit(15)`` wherever the main thread is, and
    Ctrl+C raises wherever it is too. When that is a fork hook or a finalizer (it was logging's
    ``_releaseLock`` in CI), Python prints "Exception ignored" and goes on, and the run ran to its
    end as if never signalled. Held, the signal ends the run at one known point, when init returns
    (a few seconds for a local Ray); a second signal ends it at once. Off the main thread no
    handler can be set (by us or Ray), so this holds nothing there.
    """
    signalled: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield signalled
        return

    def hold(signum: int, frame: Any) -> None:
        if signalled:  # a second one: the user means now, even if Ray is still retrying for minutes
            raise KeyboardInterrupt
        signalled.append(signum)

    utils = ray._private.utils  # Ray sets its handler through this function (ray 2.60 worker.init)
    theirs = utils.set_sigterm_handler
    # a signal the parent set to be ignored (Ctrl+C of a job started with '&') stays ignored
    ours = {sig: signal.signal(sig, hold) for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN}
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield signalled
    finally:
        utils.set_sigterm_handler = theirs
        for sig, handler in ours.items():
            # None: a handler set outside Python, which Python cannot put back; the default then
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _reinstall_handlers() -> None:
    """Set our SIGTERM and SIGINT handlers again: ``ray.shutdown`` resets the process's handlers
    below Python (a second SIGTERM then killed the process with its run left 'running') while
    Python still reports ours."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(sig)
            if handler is not None:
                signal.signal(sig, handler)


class Board:
    """Progress of running tasks, kept by a small Ray actor: tasks report, the driver reads.

    Each task's newest report replaces its last and the driver takes them (:meth:`take`); a report
    carries the reporting process's pid, so the driver sees a retry (another pid) after a worker died.
    """

    def __init__(self) -> None:
        self.reports: dict[Any, dict[str, Any]] = {}

    def report(self, key: Any, state: dict[str, Any]) -> None:
        """Keep ``state`` as task ``key``'s newest report."""
        self.reports[key] = state

    def take(self) -> dict[Any, dict[str, Any]]:
        """The newest report of each task since the last take (so the board never grows)."""
        reports, self.reports = self.reports, {}
        return reports


def board(cluster: Cluster) -> Any:
    """A new :class:`Board` actor (it takes no CPU slot from the tasks)."""
    return cluster.ray.remote(num_cpus=0)(Board).remote()


_OPENED: dict[str, Any] = {}


def open_model(checkpoint: bytes, suffix: str, device: str) -> Any:
    """On a worker: the :class:`~cowdetect.detector.DetectorBox` of ``checkpoint`` (the bytes of a
    file :meth:`DetectorBox.save` wrote, or an ``.onnx`` export), opened once per worker process."""
    from .detector import DetectorBox

    key = hashlib.sha256(checkpoint).hexdigest() + suffix + device
    if key not in _OPENED:
        _OPENED.clear()  # one model per worker: a long-lived worker must not collect them
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model{suffix}"
            path.write_bytes(checkpoint)
            _OPENED[key] = DetectorBox.load(path, device)
    return _OPENED[key]


def model_payload(box: Any, checkpoint: Path | None, scratch: Path) -> tuple[bytes, str]:
    """(file bytes, suffix) that :func:`open_model` turns back into ``box`` on a worker: the
    ``checkpoint`` (or ONNX) file ``box`` was opened from as it is, else ``box`` saved once into
    ``scratch`` (a pretrained or untrained model, or one given other classes)."""
    if checkpoint is not None:
        return Path(checkpoint).read_bytes(), Path(checkpoint).suffix.lower()
    scratch.mkdir(parents=True, exist_ok=True)
    remove_abandoned(scratch, "model-", ".pt")  # a driver killed between save and unlink
    path = scratch / f"model-{os.getpid()}-{time.monotonic_ns()}.pt"
    try:
        box.save(path)
        return path.read_bytes(), ".pt"
    finally:
        path.unlink(missing_ok=True)


def task_error(exc: BaseException) -> str:
    """One line for a task that failed: our own error's message, or why Ray gave up on it."""
    ray = import_ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        text = str(cause).strip().splitlines()
        return text[-1] if text else type(cause).__name__
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"its Ray worker died {RETRIES + 1} times (killed, out of memory, or its machine left the cluster)"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_tasks(cluster: Cluster, task: Any, items: Iterable[tuple[Any, tuple]], *,
              on_result: Callable[[Any, Any], None], on_error: Callable[[Any, str], None],
              on_poll: Callable[[], bool], to_cancel: Callable[[], Iterable[Any]] = tuple) -> bool:
    """Run ``task.remote(*args)`` for each ``(key, args)`` of ``items`` with at most the cluster's
    slots and up to 4 more submitted at once, so a long list holds bounded memory.

    As each ends, on this (the driver's) process: ``on_result(key, value)`` or ``on_error(key, one
    line)``. ``on_poll()`` runs about every :data:`POLL_SECONDS`; when it returns False, every task
    not finished is cancelled (its worker killed) and this returns False. True when all ended.
    The tasks of the keys ``to_cancel()`` names then are cancelled alone (nothing is reported of them).
    """
    ray = cluster.ray
    slots = cluster.slots()
    limit = slots + min(slots, 4)  # every slot busy and a few ready, not a 1,000-video backlog
    pending: dict[Any, Any] = {}
    todo = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < limit:
            item = next(todo, None)
            if item is None:
                exhausted = True
            else:
                pending[task.remote(*item[1])] = item[0]
        if not pending:
            return True
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            key = pending.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as exc:
                on_error(key, task_error(exc))
            else:
                on_result(key, value)
        if not on_poll():
            for ref in pending:
                ray.cancel(ref, force=True)
            return False
        unwanted = set(to_cancel())
        for ref in [ref for ref, key in pending.items() if key in unwanted]:
            ray.cancel(ref, force=True)
            del pending[ref]
