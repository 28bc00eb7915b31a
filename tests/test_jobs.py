"""Training jobs: real worker processes, stop / resume, kill -9, queueing, bad input."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import wait_for
from cowdetect import jobs
from cowdetect.demo import make_demo
from cowdetect.store import Store

BASE = "untrained:fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture
def job_store(tmp_path) -> Store:
    store = Store(tmp_path / "data")
    make_demo(store, n_train=6, n_val=2, n_test=2, seed=3, size=(128, 96), video=False)
    return store


def settings(store: Store, **kw):
    return jobs.training_settings(store, base=BASE, **{"iterations": 12, "checkpoint_every": 3, "eval_every": 0,
                                                       **kw})


def test_start_stop_resume_continues_the_count(job_store):
    run_id = jobs.create_training_run(job_store, settings(job_store, eval_every=4))
    pid = jobs.start_worker(job_store, run_id)
    # stop early: progress is flushed (and the stop request read) about once a second, so the run
    # stops within a second or two, iterations before its end
    wait_for(lambda: job_store.run(run_id).iteration >= 2, what="progress rows")
    assert jobs.pid_alive(pid) and job_store.run(run_id).status == "running"
    assert len(job_store.points(run_id)) >= 1
    jobs.request_stop(job_store, run_id)
    stopped = wait_for(lambda: (r := job_store.run(run_id)).status == "stopped" and r, what="stop")
    assert stopped.checkpoint_iteration == stopped.iteration  # stop saves a checkpoint
    assert (job_store.data_dir / stopped.checkpoint).is_file()
    at = stopped.checkpoint_iteration
    jobs.prepare_resume(job_store, run_id)
    done = jobs.run_training(job_store, run_id)  # the CLI path, in the foreground
    assert done.status == "done" and done.iteration == 12
    iterations = [p["iteration"] for p in job_store.points(run_id)]
    assert iterations == list(range(1, 13))  # continued from the checkpoint, nothing repeated or lost
    assert [p["iteration"] for p in job_store.points(run_id, "val")] == [4, 8, 12]
    model = job_store.model(done.model_id)
    assert model.params["dataset"]["image_ids"] == [s.image_id for s in job_store.dataset("train")]
    assert model.params["iterations"] == 12 and "before" in done.metrics and "after" in done.metrics
    assert 2 <= at < 12
    assert "Moo! mAP50" in jobs.cowsay_text(done.metrics)


def test_kill_9_then_resume_loses_at_most_one_checkpoint_interval(job_store):
    run_id = jobs.create_training_run(job_store, settings(job_store, test_split=""))
    pid = jobs.start_worker(job_store, run_id)
    wait_for(lambda: job_store.run(run_id).checkpoint_iteration >= 3, what="a checkpoint")
    wait_for(lambda: job_store.run(run_id).iteration > job_store.run(run_id).checkpoint_iteration,
             what="progress past the checkpoint")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not jobs.pid_alive(pid), what="the worker to die")
    killed = job_store.run(run_id)
    assert killed.status == "running"  # the row still says running ...
    assert jobs.mark_interrupted(job_store) == [run_id]  # ... until someone looks
    assert job_store.run(run_id).status == "interrupted"
    lost = killed.iteration - killed.checkpoint_iteration
    assert 0 < lost <= 3  # at most one checkpoint interval
    jobs.prepare_resume(job_store, run_id)
    done = jobs.run_training(job_store, run_id)
    assert done.status == "done"
    assert [p["iteration"] for p in job_store.points(run_id)] == list(range(1, 13))


def test_two_start_clicks_make_one_job(job_store):
    s = settings(job_store)
    first = jobs.create_training_run(job_store, s)
    assert jobs.create_training_run(job_store, s) == first
    assert len(job_store.runs("train")) == 1
    jobs.request_stop(job_store, first)  # queued with no worker: stopped at once
    assert job_store.run(first).status == "stopped"
    with pytest.raises(ValueError, match="start a new run|already"):
        jobs.prepare_resume(job_store, first) or jobs.prepare_resume(job_store, first)


def test_too_few_images_says_how_many_more(tmp_path):
    store = Store(tmp_path / "few")
    make_demo(store, n_train=3, n_val=0, n_test=0, size=(96, 64), video=False)
    with pytest.raises(ValueError, match="has 3 labeled images; label at least 2 more"):
        jobs.training_settings(store, base=BASE)


def test_non_finite_loss_fails_the_job_with_the_iteration(job_store):
    run_id = jobs.create_training_run(job_store, settings(job_store, learning_rate=1e6, iterations=40))
    with pytest.raises(FloatingPointError):
        jobs.run_training(job_store, run_id)
    run = job_store.run(run_id)
    assert run.status == "failed" and "at iteration" in run.error
    assert job_store.models() == []  # no version from a failed run


def test_jobs_started_together_run_one_at_a_time(job_store):
    """Three workers started in the same instant on one device: each runs, never two at once (their
    running intervals, read from the rows to the millisecond, do not overlap)."""
    ids = [jobs.create_training_run(job_store, settings(job_store, iterations=n, test_split="", val_split=""))
           for n in (4, 5, 6)]
    for run_id in ids:
        jobs.start_worker(job_store, run_id)
    wait_for(lambda: all(job_store.run(i).status == "done" for i in ids), timeout=300, what="three runs")
    spans = sorted((job_store.run(i).started_at, job_store.run(i).finished_at) for i in ids)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    logs = [job_store.inside(f"runs/run-{i}/worker.log").read_text() for i in ids]
    assert all("saved model version" in log for log in logs)


def test_early_stopping_keeps_the_best_checkpoint(job_store):
    run_id = jobs.create_training_run(job_store, settings(job_store, iterations=40, eval_every=2, patience=1,
                                                          checkpoint_every=0))
    done = jobs.run_training(job_store, run_id)
    stopped_at = done.metrics["early_stopped_at"]
    assert done.status == "done" and done.iteration == stopped_at < 40
    val = job_store.points(run_id, "val")
    assert [p["iteration"] for p in val][-1] == stopped_at
    best = done.metrics["best"]
    assert best["map_50"] == max(p["val_map_50"] for p in val)
    model = job_store.model(done.model_id)
    assert model.params["best_iteration"] == best["iteration"]
    # the test result is filed under the new version (before: stored before the version existed, without an id)
    result = job_store.results()[0]
    assert (result.model_id, result.model_label) == (model.id, model.label)
    assert result.metrics["map_50"] == done.metrics["after"]["map_50"]


CLAIM = """
import os, sys, time
from cowdetect.store import Store
from cowdetect.jobs.machinery import pid_alive
store, run_id, at = Store(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
store.update_run(run_id, pid=os.getpid())
while time.time() < at:  # start together: every process claims in the same few milliseconds
    pass
holder = store.claim_device(run_id, "cpu", os.getpid(), pid_alive)
print("won" if holder is None else f"lost to {holder}", flush=True)
sys.stdin.read()  # stay alive (a live holder) until the test has counted
"""


def test_device_claims_made_at_once_have_exactly_one_winner(tmp_path):
    """"One job per device" is decided under the database's write lock: of six processes that claim
    the device in the same instant, one wins and the five others name it as the holder."""
    import subprocess
    import sys
    store = Store(tmp_path / "data")
    ids = [store.add_run("evaluate", {"device": "cpu", "n": i})[0] for i in range(6)]
    at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, str(store.data_dir), str(i), str(at)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in ids]
    try:
        answers = [proc.stdout.readline().strip() for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=30)
    winners = [run_id for run_id, answer in zip(ids, answers) if answer == "won"]
    assert len(winners) == 1, answers
    assert sorted(answers) == sorted(["won"] + [f"lost to {winners[0]}"] * 5)
    assert [r.id for r in store.runs() if r.status == "running"] == winners


def test_a_run_owned_by_another_live_process_is_refused(job_store):
    import subprocess
    import sys
    run_id = jobs.create_training_run(job_store, settings(job_store))
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        job_store.update_run(run_id, pid=other.pid)
        with pytest.raises(ValueError, match=f"already being run by process {other.pid}"):
            jobs.run_training(job_store, run_id)
        assert jobs.start_worker(job_store, run_id) is None  # no second worker either
        assert job_store.run(run_id).status == "queued" and job_store.run(run_id).pid == other.pid
    finally:
        other.stdin.close()
        other.wait(timeout=30)


def test_a_signal_after_a_run_ended_keeps_its_ending(tmp_path):
    """SIGTERM (now Ctrl+C for every command) just after a run was stored done used to turn it into
    'interrupted', and a Resume would then store its version twice."""
    from cowdetect.jobs.machinery import recorded
    store = Store(tmp_path / "data")
    ended, _ = store.add_run("evaluate", {"split": "test"}, 1)
    running, _ = store.add_run("evaluate", {"split": "val"}, 1)
    store.update_run(ended, status="done")
    store.update_run(running, status="running")
    for run_id in (ended, running):
        with pytest.raises(KeyboardInterrupt), recorded(store, run_id):
            raise KeyboardInterrupt
    assert (store.run(ended).status, store.run(running).status) == ("done", "interrupted")
