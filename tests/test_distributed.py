"""Training on several processes (torchrun, DistributedDataParallel, gloo on CPU): shards, stop,
kill -9 of one rank, resume, two "machines" on one, and the bad inputs of the launch.

The runs are real: torchrun starts real ranks that train a tiny Faster R-CNN (128 px) on the demo
data and write the real store. Each torch process costs seconds to start here, so one test walks a
run through stop → resume → kill -9 → resume instead of starting a run per case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from apprunner import free_port
from conftest import ROOT, add_tiny_model, wait_for
from test_cli import cli as run_cli
from cowdetect import distributed, jobs
from cowdetect.demo import make_demo
from cowdetect.engine import _next_batch
from cowdetect.store import Store


def tiny_store(folder: Path) -> Store:
    store = Store(folder)
    make_demo(store, n_train=6, n_val=1, n_test=1, seed=3, size=(128, 96), video=False)  # 1: evaluations are quick
    add_tiny_model(store, "tiny")  # 128 px: a step takes a fraction of a second
    return store


@pytest.fixture
def ddp_store(tmp_path) -> Store:
    return tiny_store(tmp_path / "data")


@pytest.fixture(scope="module")
def refusing_store(tmp_path_factory) -> Store:
    """One folder for all the refusals: each test checks that it stays without runs."""
    return tiny_store(tmp_path_factory.mktemp("refusals") / "data")


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def end_started_processes():
    """A failed test leaves no training behind: its CLI processes get SIGTERM (torchrun and the
    ranks follow), as after Ctrl+C."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=120)


def cli_process(*args: str, data_dir: Path) -> subprocess.Popen:
    """``python -m cowdetect ARGS`` in a new process (one torch thread), its stderr piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", *args, "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    STARTED.append(proc)
    return proc


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc: the owner → torchrun → ranks)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        pid = todo.pop()
        kids = [p for p, parent in parents.items() if parent == pid]
        found += kids
        todo += kids
    return found


def rank_pids(owner: int) -> dict[int, int]:
    """{rank: pid} of the ranks under ``owner`` (each rank's RANK from its environment)."""
    ranks = {}
    for pid in descendants(owner):
        try:
            if b"cowdetect.distributed" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            env = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                       if b"=" in item)
        except OSError:
            continue
        if b"RANK" in env:  # torchrun's own command line names the module too
            ranks[int(env[b"RANK"])] = pid
    return ranks


def answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


# -- shards: cheap, no processes -------------------------------------------------------------------

@pytest.mark.parametrize("n, world", [(6, 2), (7, 2), (6, 3), (10, 4), (1, 2)])
def test_epoch_shards_are_disjoint_equal_and_cover_every_sample(n, world):
    rngs = [np.random.default_rng([0, 0]) for _ in range(world)]  # every rank seeds alike
    for epoch in range(3):  # the ranks stay in step from epoch to epoch
        shards = [distributed.epoch_shard(n, rng, rank, world) for rank, rng in enumerate(rngs)]
        assert len({len(s) for s in shards}) == 1  # equal: every rank refills at the same iteration
        every = [i for s in shards for i in s]
        assert set(every) == set(range(n))
        assert len(every) == -(-n // world) * world  # duplicates only to pad to a multiple of world
        assert len(every) - len(set(every)) == (-n) % world, (epoch, shards)  # disjoint but for the padding


def test_one_process_keeps_the_plain_shuffle():
    """With one rank the shard is the old sampler's permutation: single-process runs are unchanged."""
    assert distributed.epoch_shard(9, np.random.default_rng([4, 2])) == \
        np.random.default_rng([4, 2]).permutation(9).tolist()


def test_each_rank_draws_its_own_batches_from_one_epoch():
    """The engine's sampler itself: over one epoch (8 samples, 2 ranks x 2 batches of 2) the ranks see
    disjoint halves, and the next epoch again (the sampler only needs len() and indexing)."""
    samples = list(range(8))
    seen = []
    for rank in range(2):
        order: list[int] = []
        rng = np.random.default_rng([0, 0])
        seen.append([_next_batch(samples, order, rng, 2, distributed.Ranks(rank, 2, rank)) for _ in range(4)])
    for epoch in (slice(0, 2), slice(2, 4)):
        halves = [sorted(i for batch in batches[epoch] for i in batch) for batches in seen]
        assert sorted(halves[0] + halves[1]) == samples, halves


# -- bad input: one line each, nothing stored ------------------------------------------------------

def cli(*args: str) -> tuple[int, str]:
    """tests/test_cli.py's in-process CLI: (status, stderr)."""
    result = run_cli(*args)
    return result.returncode, result.stderr.strip()


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "argument --nproc: expected a number of processes from 1 to 1024, got '0'"),
    (["--nproc", "3"], "batch_size: expected a multiple of the 3 training processes"),
    (["--nnodes", "2"], "rdzv_endpoint: needed with 2 machines: HOST:PORT of this machine"),
    (["--rdzv-endpoint", "127.0.0.1:29500"], "rdzv_endpoint: only for training on several machines"),
    (["--node-rank", "1"], "node_rank: 1 is for a joining machine (with --join RUN_ID)"),
    (["--nnodes", "2", "--rdzv-endpoint", "127.0.0.1"], "rdzv_endpoint: expected HOST:PORT"),
    (["--nnodes", "2", "--rdzv-endpoint", "192.0.2.1:29500"], "192.0.2.1 is not an address of this machine"),
    (["--model", "untrained:ssd_mobilenet_v2_coco", "--nproc", "4"], "batch_size: expected at least 2 images per"),
])
def test_bad_launch_settings_are_one_line_and_store_nothing(refusing_store, args, message):
    code, err = cli("train", "--model", "tiny", "--batch-size", "4", *args, "--data-dir", str(refusing_store.data_dir))
    assert code == 2 and err.count("\n") == 0 and message in err, err
    assert refusing_store.runs() == []


def test_endpoint_checks_answer_within_seconds():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} is in use"):
            distributed.check_endpoint(f"127.0.0.1:{port}", 0)
    closed = free_port()
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"nothing answers at 127.0.0.1:{closed} within 1 s"):
        distributed.check_endpoint(f"127.0.0.1:{closed}", 1, wait=1.0)
    assert time.monotonic() - started < 5


def test_joining_a_one_machine_run_or_a_bad_node_rank_is_refused(ddp_store):
    one = jobs.create_training_run(ddp_store, jobs.training_settings(ddp_store, base="tiny", batch_size=4, nproc=2))
    two = jobs.create_training_run(ddp_store, jobs.training_settings(ddp_store, base="tiny", batch_size=4, nnodes=2))
    data = ["--data-dir", str(ddp_store.data_dir)]
    assert cli("train", "--join", str(one), "--node-rank", "1", "--rdzv-endpoint", "127.0.0.1:1", *data) == \
        (2, f"error: run {one} trains on one machine: there is nothing to join")
    assert cli("train", "--join", str(two), "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:1", *data) == \
        (2, f"error: node_rank: expected 1 to 1 (run {two} trains on 2 machines), got 2")
    code, err = cli("train", "--resume", str(one), "--nproc", "3", *data)
    assert code == 2 and "nproc: this run trains with nproc 2" in err


def test_a_page_refuses_to_resume_a_run_on_several_machines(ddp_store):
    """A page's Resume starts a worker, which cannot host node 0's rendezvous: refused in one line,
    the row left as it was; the command line (machine 0 with its endpoint) still resumes it."""
    two = jobs.create_training_run(ddp_store, jobs.training_settings(ddp_store, base="tiny", batch_size=4, nnodes=2))
    ddp_store.update_run(two, status="interrupted")
    with pytest.raises(ValueError, match=f"run {two} trains on 2 machines: resume it on machine 0 with python -m "
                                         f"cowdetect train --resume {two} --rdzv-endpoint HOST:PORT"):
        jobs.prepare_resume(ddp_store, two, background=True)
    assert ddp_store.run(two).status == "interrupted"
    jobs.prepare_resume(ddp_store, two)
    assert ddp_store.run(two).status == "queued"


def test_a_lost_peer_is_told_from_a_real_error():
    """A rank whose collective failed because another died writes nothing (the owner marks the run
    interrupted); any other error is the run's failure. The gloo text is what torch 2.14 raised when
    the other of two ranks was killed with SIGKILL (plain RuntimeError, not DistError)."""
    gloo = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
            "[127.0.0.1]:29325. This is typically caused by a remote process exiting.")
    assert distributed.peer_lost(RuntimeError(gloo))
    assert distributed.peer_lost(torch.distributed.DistBackendError("NCCL communicator was aborted"))
    assert not distributed.peer_lost(RuntimeError("loss became nan at iteration 3"))
    assert not distributed.peer_lost(ValueError("box outside its image"))


def test_more_cpu_processes_than_cores_run_with_a_warning_and_gpus_are_counted(monkeypatch):
    cores = distributed.cpu_cores()
    assert "slower than" in distributed.oversubscribed(cores + 1, torch.device("cpu"))
    assert distributed.oversubscribed(cores, torch.device("cpu")) is None
    # this machine has no GPU: its count is what is stubbed, to check the refusal a 2-GPU machine gives
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="nproc: expected 1 to 2 on this machine's 2 GPU"):
        distributed.check_processes(3, 1, torch.device("cuda", 0), 6)
    distributed.check_processes(2, 1, torch.device("cuda", 0), 4)


# -- real runs -------------------------------------------------------------------------------------

def test_two_processes_kill_9_of_one_rank_then_resume_to_one_version(ddp_store):
    """`train --nproc 2` → kill -9 of rank 1 → torchrun ends rank 0, the run is interrupted and the
    command exits 1 → resume (the CLI's call, in this process) restarts both ranks from the checkpoint
    and finishes: every iteration recorded once, by rank 0, and one model version."""
    first = cli_process("train", "--model", "tiny", "--nproc", "2", "--batch-size", "4", "--iterations", "8",
                        "--checkpoint-every", "2", "--eval-every", "4", "--log-every", "0.1",
                        data_dir=ddp_store.data_dir)
    run_id = wait_for(lambda: (runs := ddp_store.runs("train")) and runs[0].checkpoint_iteration >= 2
                      and runs[0].iteration > runs[0].checkpoint_iteration and runs[0].id,
                      what="a checkpoint and progress past it")
    ranks = rank_pids(first.pid)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    out, err = first.communicate(timeout=120)
    killed = ddp_store.run(run_id)
    assert first.returncode == 1 and killed.status == "interrupted", err
    assert "a training process ended unexpectedly" in killed.error
    assert f"run {run_id} interrupted at iteration {killed.iteration}" in out and f"train --resume {run_id}" in out
    assert not any(jobs.pid_alive(p) for p in ranks.values())  # torchrun ended rank 0 too
    assert 0 < killed.iteration - killed.checkpoint_iteration <= 2  # at most one checkpoint interval lost
    assert err.count(f"run {run_id}: training") == 1  # one rank speaks (rank 0); the other is quiet

    jobs.prepare_resume(ddp_store, run_id)
    done = jobs.run_training(ddp_store, run_id)
    assert done.status == "done" and done.iteration == 8
    assert [p["iteration"] for p in ddp_store.points(run_id)] == list(range(1, 9))  # no duplicates, no gaps
    assert [p["iteration"] for p in ddp_store.points(run_id, "val")] == [4, 8]
    assert [m.params["run_id"] for m in ddp_store.models() if m.params.get("run_id")] == [run_id]
    assert ddp_store.model(done.model_id).params["iterations"] == 8


def test_two_machines_on_one_and_a_stop_reaches_both(ddp_store):
    """Node 0 (`train --nnodes 2 --rdzv-endpoint`) and node 1 (`train --join`), 1 process each, meet at
    a local endpoint; rank 0 (on node 0) writes, node 1 only trains. A stop that rank 0 reads ends
    the ranks of both machines after the same step, with a checkpoint there."""
    endpoint = f"127.0.0.1:{free_port()}"
    data = ddp_store.data_dir
    node0 = cli_process("train", "--model", "tiny", "--nnodes", "2", "--rdzv-endpoint", endpoint, "--batch-size", "2",
                        "--iterations", "50", "--eval-every", "0", "--log-every", "0.1", data_dir=data)
    run_id = wait_for(lambda: ddp_store.runs("train") and ddp_store.runs("train")[0].id, what="the run")
    wait_for(lambda: answers(*distributed.parse_endpoint(endpoint)), what="node 0's rendezvous")
    node1 = cli_process("train", "--join", str(run_id), "--node-rank", "1", "--rdzv-endpoint", endpoint,
                        data_dir=data)
    wait_for(lambda: ddp_store.run(run_id).iteration >= 1, what="progress")
    jobs.request_stop(ddp_store, run_id)
    _, err1 = node1.communicate(timeout=120)
    _, err0 = node0.communicate(timeout=120)
    assert node0.returncode == 0 and node1.returncode == 0, (err0, err1)
    assert f"run there: python -m cowdetect train --join {run_id} --node-rank 1 --rdzv-endpoint {endpoint}" in err0
    assert f"machine 1 of run {run_id}: finished" in err1 and "iter " not in err1  # node 1 writes nothing
    stopped = ddp_store.run(run_id)
    assert stopped.status == "stopped" and stopped.checkpoint_iteration == stopped.iteration < 50
    assert [p["iteration"] for p in ddp_store.points(run_id)] == list(range(1, stopped.iteration + 1))
    assert stopped.params["nnodes"] == 2 and "over 2 processes" in err0


def test_train_page_passes_its_process_count_to_the_checks(refusing_store, monkeypatch):
    """The page's "Processes / GPUs" reaches the same checks as --nproc: 3 processes cannot share a
    batch of 2, said in one line, and nothing is queued."""
    from conftest import open_page

    at = open_page("train", refusing_store, monkeypatch)
    at.selectbox[0].select("untrained:fasterrcnn_mobilenet_v3_large_320_fpn")
    at.number_input(key="nproc").set_value(3)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert "batch_size: expected a multiple of the 3 training processes" in at.error[0].value
    assert refusing_store.runs() == []


# -- hostile inputs (cheap: the deciding functions, no processes) -----------------------------------

def test_cpu_processes_are_capped_so_a_huge_nproc_cannot_fill_the_memory():
    """--nproc 1024 --batch-size 1024 on CPU passed every check and would have started 1024 torch
    processes (~0.5 GB each). More than 4 per core is refused in one line; a rehearsal of 4 per core
    is still allowed."""
    cores = distributed.cpu_cores()
    allowed = distributed.CPU_PROCESSES_PER_CORE * cores
    distributed.check_processes(allowed, 1, torch.device("cpu"), allowed)
    with pytest.raises(ValueError, match=f"nproc: expected 1 to {allowed} CPU processes on this machine's {cores} "
                                         f"cores .*got {allowed + 1}"):
        distributed.check_processes(allowed + 1, 1, torch.device("cpu"), allowed + 1)


@pytest.mark.parametrize("endpoint", ["0.0.0.0:{port}", "[::]:{port}"])
def test_node_0_refuses_a_wildcard_endpoint_the_others_cannot_reach(endpoint):
    """0.0.0.0 binds, so it passed as "this machine's address", and the printed --join line sent the
    other machines to 0.0.0.0 (themselves)."""
    with pytest.raises(ValueError, match="is no address the other machines can reach"):
        distributed.check_endpoint(endpoint.format(port=free_port()), 0)


def test_a_non_trainer_cannot_join_and_a_done_run_is_not_joined(ddp_store):
    """join_training checked no role (the joining ranks train as the run's owner), and joining a done
    run went on to torchrun, which waits rdzv_timeout (300 s) for a node 0 that never comes."""
    from cowdetect.accounts import PermissionDenied, User
    from cowdetect.jobs.train import join_training

    run_id = jobs.create_training_run(ddp_store, jobs.training_settings(ddp_store, base="tiny", batch_size=4,
                                                                        nnodes=2))
    admin = ddp_store.as_user(User("ada", "admin"))
    admin.add_user("ada", "admin", "admin password")
    admin.add_user("vic", "viewer", "viewer password")
    with pytest.raises(PermissionDenied, match="vic \\(viewer\\) may not train"):
        join_training(ddp_store.as_user(admin.account("vic")), run_id, 1, "127.0.0.1:1")
    ddp_store.update_run(run_id, status="done")
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"run {run_id} is done; there is nothing to join"):
        join_training(ddp_store, run_id, 1, "127.0.0.1:1")
    assert time.monotonic() - started < 2  # refused at once, not after the endpoint's 10 s


def test_a_join_with_another_runs_id_meets_node_0_and_is_refused():
    """A machine that joined run 8 at run 7's endpoint used rendezvous id cowdetect-run-8: its keys
    went under a prefix node 0 never reads, so both machines waited rdzv_timeout (300 s) and node 0's
    run ended "interrupted" with no reason. Now every run meets under one id and the ranks compare
    run ids first (same_run), before anything is written."""
    seven = distributed.torchrun_command(7, Path("/d"), 1, 2, 0, "127.0.0.1:29500")
    eight = distributed.torchrun_command(8, Path("/d"), 1, 2, 1, "127.0.0.1:29500")
    rdzv_id = [a for a in seven if a.startswith("--rdzv-id")]
    assert rdzv_id == [a for a in eight if a.startswith("--rdzv-id")] and len(rdzv_id) == 1
    same = distributed.fingerprint(7, 0, 6, "ab" * 8)
    distributed.check_same_start(same, same, same)
    other = distributed.fingerprint(8, 0, 6, "ab" * 8)
    with pytest.raises(ValueError, match="join: the machines at this endpoint were started for runs 7 and 8 "
                                         "\\(this one: 8\\); every machine must --join the run node 0 started"):
        distributed.check_same_start(other, same, other)


# -- review fixes (cheap: the deciding functions, no processes) --------------------------------------

def test_ranks_with_a_stale_data_folder_copy_are_refused_with_what_differs():
    """Node 1's copy made before a checkpoint or before new labels: the ranks would start at other
    iterations or shard other images, silently. MIN/MAX over the ranks name what differs."""
    node0 = distributed.fingerprint(7, 4, 6, "0123456789abcdef")
    node1 = distributed.fingerprint(7, 0, 5, "fedcba9876543210")
    assert all(0 <= v < 2 ** 63 for v in node0 + node1)  # fits the int64 all_reduce
    lowest, highest = [min(a, b) for a, b in zip(node0, node1)], [max(a, b) for a, b in zip(node0, node1)]
    with pytest.raises(ValueError, match="data folders differ for run 7 \\(start iteration 0 vs 4; train images 5 "
                                         "vs 6; train labels\\); copy node 0's data folder .* after 'run 7'"):
        distributed.check_same_start(node1, lowest, highest)
    relabeled = distributed.fingerprint(7, 4, 6, "1123456789abcdef")  # same count, other boxes
    with pytest.raises(ValueError, match="differ for run 7 \\(train labels\\)"):
        distributed.check_same_start(node0, [min(a, b) for a, b in zip(node0, relabeled)],
                                     [max(a, b) for a, b in zip(node0, relabeled)])


def test_how_a_run_on_several_processes_ended_is_classified():
    """No step done → failed (a resume would fail the same way); steps done → interrupted, resumed
    from the checkpoint, or "from the start" when there is none; a gloo timeout is no lost peer."""
    status, message = jobs.train.ending(1, 4, 4, 4)
    assert status == "failed" and "ended before the first step (torchrun exit status 1)" in message
    assert jobs.train.ending(1, 0, 3, 2) == ("interrupted", "a training process ended unexpectedly (torchrun exit "
                                                           "status 1); resume continues from the checkpoint at "
                                                           "iteration 2")
    assert jobs.train.ending(-9, 0, 1, 0)[1].endswith("resume continues from the start (no checkpoint yet)")
    timeout = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
                           "1800000ms for recv operation to complete")
    assert distributed.timed_out(timeout) and not distributed.peer_lost(timeout)


def test_a_rank_trains_only_for_the_owner_that_started_it():
    """A rank started by hand, for a done run, or after another owner took the run over (its pid
    in the row) refuses; a joining machine's copy names node 0's owner, so only "done" counts there."""
    with pytest.raises(ValueError, match="ranks are started by `python -m cowdetect train`"):
        distributed.check_owner(3, "running", 100, None, 0)
    with pytest.raises(ValueError, match="run 3 is running \\(owner pid 200\\), not running under the process that "
                                         "started these ranks \\(pid 100\\)"):
        distributed.check_owner(3, "running", 200, "100", 0)
    with pytest.raises(ValueError, match="run 3 is done"):
        distributed.check_owner(3, "done", 100, "100", 0)
    with pytest.raises(ValueError, match="run 3 is done; there is nothing to train"):
        distributed.check_owner(3, "done", 555, "100", 1)
    distributed.check_owner(3, "running", 100, "100", 0)
    distributed.check_owner(3, "running", 555, "100", 1)  # node 1: the row names node 0's owner
    assert not distributed.parent_gone(str(os.getpid()))  # this test's parent lives, and so do we
    assert distributed.parent_gone(str(2 ** 22 + 1))  # above pid_max's default: no such process


def test_join_refuses_training_options_it_would_ignore(ddp_store):
    run_id = jobs.create_training_run(ddp_store, jobs.training_settings(ddp_store, base="tiny", batch_size=4,
                                                                        nnodes=2))
    code, err = cli("train", "--join", str(run_id), "--node-rank", "1", "--rdzv-endpoint", "127.0.0.1:1",
                    "--iterations", "9", "--lr", "0.1", "--model", "tiny", "--data-dir", str(ddp_store.data_dir))
    assert code == 2 and err == ("error: join: --model, --iterations, --lr cannot be given with --join (the run keeps "
                                 "the settings node 0 started it with); give only --node-rank, --rdzv-endpoint and "
                                 "--data-dir")
    assert ddp_store.run(run_id).status == "queued" and ddp_store.run(run_id).params["config"]["iterations"] != 9
