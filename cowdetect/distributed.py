"""Training on several processes: DistributedDataParallel through torchrun, on one machine or several.

A run with more than one process is still one row and one owner (the worker, or ``python -m
cowdetect train`` in the foreground): the owner takes the run and its device exactly as for one
process, then starts ``torchrun`` (:func:`torchrun_command`), which starts the ranks, each
``python -m cowdetect.distributed RUN_ID`` (:func:`main`). Each rank trains on its own shard of
every epoch (:func:`epoch_shard`) with an equal part of the batch (:func:`local_batch`); DDP
averages the gradients, so all ranks keep the same weights. Rank 0 alone writes progress rows,
checkpoints, validation and the model version; the loss it records is the mean over the ranks
(:func:`mean_over_ranks`). A stop that rank 0 reads reaches every rank through :func:`any_rank`
each iteration, so all stop after the same step and rank 0's checkpoint holds that step.

Batch norm: a pretrained torchvision Faster R-CNN has FrozenBatchNorm2d (constants: nothing to
share). SSD, and untrained torchvision models, train nn.BatchNorm2d in train mode (the SSD recipe
diverged with frozen batch norm, see cowdetect/config.py). On GPUs they become SyncBatchNorm, whose
statistics cover the whole batch across ranks, as with one process. torch's SyncBatchNorm refuses
CPU tensors, so on CPU (gloo) each rank normalises over its own part of the batch; DDP broadcasts
rank 0's running statistics before every forward, so every rank and every checkpoint agree
(bench/bench_ddp.py measures what the smaller per-rank batch changes).

Ending: a rank that dies makes torchrun stop the others (``--max-restarts 0``); the owner then
marks the run interrupted, and a resume restarts every rank from the last checkpoint. The ranks and
torchrun end with their parent (:func:`die_with_parent`), so a killed owner leaves none training.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

# Seconds node 0 waits for the other machines to join (torchrun's static rendezvous timeout).
RDZV_TIMEOUT = 300
# Seconds a joining machine keeps trying node 0's endpoint before it says nothing answers there.
REACH_SECONDS = 10.0
# Collectives wait this long for a slow rank (rank 0 validating while the others wait) before failing.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
ROOT = Path(__file__).resolve().parents[1]
# CPU ranks allowed per core: a rehearsal of a larger launch, not a way to fill the memory.
CPU_PROCESSES_PER_CORE = 4
# The owner's pid, passed to its ranks: a rank trains only a run that this owner holds.
OWNER_ENV = "COWDETECT_OWNER_PID"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        """True on rank 0, the one process that writes."""
        return self.rank == 0


def current() -> Ranks | None:
    """The ranks torchrun set up in this process (:func:`main`), or None when training on one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    # a group of one (torchrun --nproc-per-node=1) is still DDP: the GPU tests run NCCL on one GPU so
    return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")))


def epoch_shard(n: int, rng: np.random.Generator, rank: int = 0, world: int = 1) -> list[int]:
    """Rank ``rank``'s share of a new epoch over ``n`` samples: one shuffle drawn from ``rng`` (the
    same on every rank), padded by wrapping around to a multiple of ``world`` and dealt out
    round-robin, as torch's DistributedSampler does. The shares are disjoint except for the padding
    and of equal length, so every rank starts its next epoch at the same iteration and draws the
    same next shuffle. With ``world`` 1 it is the plain shuffle (single-process runs unchanged).
    torch's sampler is not used because it shuffles with its own generator: one-process runs would
    change their order, and the engine's sampler draws endlessly rather than per epoch."""
    order = rng.permutation(n).tolist()
    total = -(-n // world) * world
    return [order[i % n] for i in range(total)][rank::world]


def local_batch(batch_size: int, world: int) -> int:
    """Each rank's part of ``batch_size`` (the batch the optimizer sees, summed over the ranks)."""
    if batch_size % world:
        raise ValueError(f"batch_size: expected a multiple of the {world} training processes (each trains on an "
                         f"equal part of the batch), got {batch_size}")
    return batch_size // world


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel; on GPUs its batch norms become SyncBatchNorm first (in
    place: the optimizer's parameters and the caller's module stay the same objects)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert synced is model  # a detector is never a bare batch norm: its children were replaced
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a stop that rank 0 read reaches all)."""
    value = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over the ranks (each rank's loss is over its part of the batch)."""
    keys = sorted(values)
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return dict(zip(keys, (total / torch.distributed.get_world_size()).tolist()))


def peer_lost(exc: BaseException) -> bool:
    """True when ``exc`` is a collective that failed because another rank is gone (killed, its
    machine lost): torch's DistError (NCCL), or gloo's plain RuntimeError from its transport
    ("[.../gloo/transport/tcp/pair.cc] Connection closed by peer", checked on torch 2.14). A gloo
    timeout comes from the same transport but means a peer was too slow, not gone (:func:`timed_out`)."""
    if timed_out(exc):
        return False
    return isinstance(exc, torch.distributed.DistError) or (isinstance(exc, RuntimeError)
                                                            and "gloo/transport" in str(exc))


def timed_out(exc: BaseException) -> bool:
    """True when a collective gave up waiting (COLLECTIVE_TIMEOUT) for a rank that is still there,
    e.g. the others waiting while rank 0 validates ("Timed out waiting 1800000ms for recv")."""
    return isinstance(exc, (RuntimeError, torch.distributed.DistError)) and "timed out" in str(exc).lower()


# What the ranks compare before training (:func:`same_start`): each is an int63, over every rank.
FINGERPRINT = ("run", "start iteration", "train images", "train labels")


def fingerprint(run_id: int, start_iteration: int, train_images: int, train_hash: str) -> list[int]:
    """What every rank must agree on before it trains: the run, the iteration it starts from (its
    checkpoint), the train split's size and :func:`cowdetect.store.hash_dataset` of it (image ids and
    boxes; its first 15 hex digits, so that it fits an int64)."""
    return [run_id, start_iteration, train_images, int(train_hash[:15], 16)]


def check_same_start(mine: Sequence[int], lowest: Sequence[int], highest: Sequence[int]) -> None:
    """Refuse ranks that loaded different things (``lowest``/``highest``: each fingerprint field's
    MIN and MAX over the ranks): a stale copy of the data folder on another machine would train on
    other shards, another lr schedule, or loops of another length, silently."""
    if lowest[0] != highest[0]:
        raise ValueError(f"join: the machines at this endpoint were started for runs {lowest[0]} and "
                         f"{highest[0]} (this one: {mine[0]}); every machine must --join the run node 0 started")
    differ = [f"{name} {lo} vs {hi}" if name != "train labels" else name
              for name, lo, hi in zip(FINGERPRINT[1:], lowest[1:], highest[1:]) if lo != hi]
    if differ:
        raise ValueError(f"join: the machines' data folders differ for run {mine[0]} ({'; '.join(differ)}); copy "
                         f"node 0's data folder to the others again after 'run {mine[0]}' is printed, then resume")


def same_start(mine: Sequence[int], device: torch.device) -> None:
    """Every rank loaded the same :func:`fingerprint`, or ValueError on all of them. MIN and MAX by
    all_reduce of integers: no pickled object from a peer is ever read (all_gather_object would)."""
    values = torch.tensor([*mine, *(-v for v in mine)], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    n = len(mine)
    check_same_start(mine, [-int(v) for v in values[n:]], [int(v) for v in values[:n]])


@contextlib.contextmanager
def main_first(ranks: Ranks | None) -> Iterator[None]:
    """Rank 0 runs the block first (it may write: converted weights, the start checkpoint), the
    other ranks after it."""
    if ranks is not None and not ranks.main:
        torch.distributed.barrier()
    yield
    if ranks is not None and ranks.main:
        torch.distributed.barrier()


# -- the owner's side: checks, the torchrun command, the launch ------------------------------------

def processes(settings: dict[str, Any]) -> int:
    """How many training processes a run's settings ask for (runs from before this setting: 1)."""
    return int(settings.get("nproc", 1)) * int(settings.get("nnodes", 1))


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_processes(nproc: Any, nnodes: Any, device: torch.device, batch_size: int, per_process: int = 1) -> None:
    """Refuse a process count the machine or the batch cannot take (ValueError naming the setting).

    On GPUs each process needs its own GPU (NCCL refuses two ranks on one). On CPU more processes
    than cores are allowed (:func:`oversubscribed` says it is slow): it rehearses a larger launch
    and lets a one-core machine run the same code. ``per_process``: the fewest images a process may
    train on (SSD's batch norm needs 2)."""
    for name, value in (("nproc", nproc), ("nnodes", nnodes)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1024:
            raise ValueError(f"{name}: expected a whole number from 1 to 1024, got {value!r}")
    if device.type == "cpu" and nproc > CPU_PROCESSES_PER_CORE * cpu_cores():
        # each rank is a whole torch process (~0.5 GB): 1024 of them would take the machine's memory
        limit = CPU_PROCESSES_PER_CORE * cpu_cores()
        raise ValueError(f"nproc: expected 1 to {limit} CPU processes on this machine's {cpu_cores()} cores "
                         f"(more only rehearse a launch, slower, each a whole torch process), got {nproc}")
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise ValueError(f"nproc: expected 1 to {gpus} on this machine's {gpus} GPU(s) (one process per GPU), "
                             f"got {nproc}")
        if nproc > 1 and device.index not in (None, 0):
            raise ValueError(f"device: with several processes the ranks use GPUs 0 to {nproc - 1} (choose them with "
                             f"CUDA_VISIBLE_DEVICES), got {device}")
    world = nproc * nnodes
    part = local_batch(batch_size, world)
    if part < per_process:
        raise ValueError(f"batch_size: expected at least {per_process} images per process ({per_process * world} "
                         f"for {world} processes; this model's batch norm learns from each process's images), "
                         f"got {batch_size}")


def oversubscribed(nproc: int, device: torch.device) -> str | None:
    """A warning when CPU processes outnumber the cores (each all-reduce waits for the slowest)."""
    cores = cpu_cores()
    if device.type == "cpu" and nproc > cores:
        return (f"{nproc} processes on {cores} CPU cores: every step waits for all of them, so this is slower "
                f"than {cores}; it only rehearses a larger launch")
    return None


def rank_threads(nproc: int) -> int:
    """CPU threads per rank: ``$COWDETECT_THREADS`` when set, else the cores shared out (at least 1)."""
    given = os.environ.get("COWDETECT_THREADS")
    if given and given.isdigit() and int(given) >= 1:
        return int(given)
    return max(1, cpu_cores() // nproc)


def parse_endpoint(text: Any) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) → (host, port); ValueError otherwise."""
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"rdzv_endpoint: expected HOST:PORT, node 0's address and a free port that every machine "
                         f"reaches (e.g. 10.0.0.5:29500), got {text!r}")
    return host, int(port)


def check_endpoint(endpoint: Any, node_rank: int, wait: float = REACH_SECONDS) -> None:
    """Check the rendezvous endpoint before anything starts, so a wrong one is a line, not a hang.

    Node 0 hosts it: its host must be an address of this machine and its port free. A joining
    node must reach it within ``wait`` seconds (node 0 is started first)."""
    host, port = parse_endpoint(endpoint)
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ValueError(f"rdzv_endpoint: cannot resolve {host!r} ({exc.strerror})") from None
    if node_rank == 0:
        if ipaddress.ip_address(address[0].split("%")[0]).is_unspecified:  # the join line would name it
            raise ValueError(f"rdzv_endpoint: {host} is no address the other machines can reach; give this "
                             f"machine's own (e.g. 10.0.0.5:{port})")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                why = {errno.EADDRINUSE: f"port {port} is in use; choose another",
                       errno.EADDRNOTAVAIL: f"{host} is not an address of this machine (node 0, the one that "
                                            "starts the run, hosts the rendezvous)"}
                raise ValueError(f"rdzv_endpoint: {why.get(exc.errno, exc.strerror)}") from None
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            socket.create_connection(address[:2], timeout=max(0.1, deadline - time.monotonic())).close()
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ValueError(f"rdzv_endpoint: nothing answers at {host}:{port} within {wait:g} s "
                                 f"({exc.strerror or exc}); start node 0 first, and check the address, the port "
                                 "and the firewall") from None
            time.sleep(0.5)


def check_launch(nnodes: int, node_rank: int, endpoint: str | None, joining: bool) -> None:
    """The multi-machine options agree: ``endpoint`` with more than one machine (and only then),
    ``node_rank`` > 0 only on a joining machine. Node 0's endpoint is checked here too (it must
    be this machine's, its port free); a joining machine's when it joins (:func:`check_endpoint`)."""
    if joining:
        if endpoint is None:
            raise ValueError("rdzv_endpoint: a joining machine needs node 0's HOST:PORT (--rdzv-endpoint)")
        if node_rank < 1:
            raise ValueError(f"node_rank: a joining machine is number 1 or more (node 0 starts the run), "
                             f"got {node_rank}")
        parse_endpoint(endpoint)
        return
    if node_rank != 0:
        raise ValueError(f"node_rank: {node_rank} is for a joining machine (with --join RUN_ID); the machine that "
                         "starts the run is node 0")
    if nnodes > 1 and endpoint is None:
        raise ValueError(f"rdzv_endpoint: needed with {nnodes} machines: HOST:PORT of this machine (node 0), "
                         "reachable from the others")
    if nnodes == 1 and endpoint is not None:
        raise ValueError(f"rdzv_endpoint: only for training on several machines (--nnodes 2 or more), got "
                         f"{endpoint!r} with one")
    if nnodes > 1:
        check_endpoint(endpoint, 0)


def same_processes(settings: dict[str, Any], nproc: int | None, nnodes: int | None) -> None:
    """Refuse process counts that differ from a run's own (a resumed or joined run keeps them)."""
    for name, given in (("nproc", nproc), ("nnodes", nnodes)):
        own = int(settings.get(name, 1))
        if given is not None and given != own:
            raise ValueError(f"{name}: this run trains with {name} {own} (a resumed or joined run keeps its "
                             f"processes; start a new run for others), got {given}")


def torchrun_command(run_id: int, data_dir: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     endpoint: str | None = None, timeout: int = RDZV_TIMEOUT, log_every: float = 5.0) -> list[str]:
    """The torchrun command line that runs ``nproc`` ranks of run ``run_id`` on this machine.

    One machine: ``--standalone`` (a local rendezvous on a free port). Several: the static
    rendezvous at ``endpoint`` hosted by node 0, so global rank 0 (the one that writes) is always
    on node 0, the machine that started the run and owns its row."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--max-restarts=0"]
    if nnodes == 1:
        command.append("--standalone")
    else:
        command += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=static",
                    # one id for every run: a machine that joins another run's id at this endpoint
                    # then meets node 0 and is refused in one line (same_start), instead of waiting
                    # rdzv_timeout under a store prefix nobody else uses
                    f"--rdzv-endpoint={endpoint}", "--rdzv-id=cowdetect",
                    f"--rdzv-conf=timeout={timeout}"]
    return command + ["-m", "cowdetect.distributed", str(run_id), "--data-dir", str(data_dir),
                      "--log-every", str(log_every)]


def join_command(run_id: int, node_rank: int, endpoint: str, data_dir: Path) -> str:
    """What another machine runs to take part in run ``run_id`` (logged by node 0)."""
    return (f"python -m cowdetect train --join {run_id} --node-rank {node_rank} --rdzv-endpoint {endpoint} "
            f"--data-dir {data_dir}")


def run_torchrun(command: Sequence[str], nproc: int) -> int:
    """Run ``command`` (see :func:`torchrun_command`) to its end; returns torchrun's exit status.

    Each rank gets its share of the CPU threads (``OMP_NUM_THREADS``, ``COWDETECT_THREADS``) and
    this process's pid (:data:`OWNER_ENV`, :func:`check_owner`). PR_SET_PDEATHSIG follows the
    calling thread: call this from the thread that lives as long as the run (not a short-lived one).
    Ctrl+C or SIGTERM here lets torchrun stop its ranks (SIGTERM) before this process goes on."""
    threads = str(rank_threads(nproc))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "COWDETECT_THREADS": threads, OWNER_ENV: str(os.getpid())}
    prctl = _prctl()  # looked up before the fork: the child runs only this call before exec
    proc = subprocess.Popen(list(command), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            preexec_fn=None if prctl is None else lambda: prctl(1, int(signal.SIGTERM)))
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _prctl() -> Any:
    """Linux's prctl, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent ends (prctl PR_SET_PDEATHSIG = 1), so a
    rank whose torchrun was killed stops instead of training on unseen. The standard library has no
    call for it; elsewhere this does nothing."""
    prctl = _prctl()
    if prctl is not None:
        prctl(1, int(signal.SIGTERM))


def check_owner(run_id: int, status: str, row_pid: int | None, owner: str | None, node_rank: int) -> None:
    """Refuse a rank that its run's owner did not start (ValueError): started by hand (no
    :data:`OWNER_ENV`), or on node 0 for a run that is not running under that owner (done, failed,
    resumed by another owner after this one was lost). A joining machine's copy of the row names
    node 0's owner, so there only a done run is refused."""
    if owner is None or not owner.isdigit():
        raise ValueError(f"run {run_id}: ranks are started by `python -m cowdetect train` (through torchrun), "
                         "not by hand")
    if node_rank == 0 and (status != "running" or row_pid != int(owner)):
        raise ValueError(f"run {run_id} is {status} (owner pid {row_pid}), not running under the process that "
                         f"started these ranks (pid {owner}); they stop without training")
    if status == "done":
        raise ValueError(f"run {run_id} is done; there is nothing to train")


def parent_gone(owner: str | None) -> bool:
    """True when this rank's torchrun ended before :func:`die_with_parent` armed (reparented to init)
    or the owner is gone: PDEATHSIG set after the parent died never fires."""
    from .files import pid_alive

    return os.getppid() == 1 or (owner is not None and owner.isdigit() and not pid_alive(int(owner)))


# -- the rank's side ------------------------------------------------------------------------------

def start_rank(device_type: str) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun announced (env://): NCCL on GPUs, gloo on CPU."""
    local = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    ranks = current()
    if ranks is None:  # init_process_group returned without a group: torch's own bug, said plainly
        raise RuntimeError("torch.distributed did not start a process group")
    return ranks, device


def main(argv: Sequence[str] | None = None) -> int:
    """One rank of a training run on several processes (started by torchrun; see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m cowdetect.distributed",
                                     description="one rank of a training run (torchrun starts these)")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--log-every", type=float, default=5.0)
    args = parser.parse_args(argv)
    die_with_parent()
    owner = os.environ.get(OWNER_ENV)
    if parent_gone(owner):  # checked after arming: the parent may have died before
        return 130
    from .jobs.machinery import install_sigterm_handler
    from .jobs.train import run_rank
    from .store import Store

    install_sigterm_handler()  # torchrun stops ranks with SIGTERM: end as after Ctrl+C
    store = Store(args.data_dir)
    run = store.run(args.run_id)
    try:
        check_owner(run.id, run.status, run.pid, owner, int(os.environ.get("GROUP_RANK", "0")))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = store.as_user(store.acting_for_run(run.user))  # type: ignore[assignment]
    ranks, device = start_rank(torch.device(run.params["device"]).type)
    try:
        run_rank(store, args.run_id, ranks, device, log_every=args.log_every)
    except KeyboardInterrupt:
        return 130
    finally:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
