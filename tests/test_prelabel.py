"""The pre-label job: suggestions for the unlabeled images of a split from a tiny real model,
never ground truth; Stop, resume, kill -9 and resume again lose nothing and redo nothing; bad
input refused before any work (library and CLI); the uncertainty score; the CLI's effort report;
the Data page's panel and the Models page's effort table."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import add_tiny_model, open_page, wait_for
from cowdetect import jobs
from cowdetect.demo import make_demo
from cowdetect.jobs import prelabel
from cowdetect.store import Store
from test_cli import assert_one_error_line, cli, files_of


def add_unlabeled(store: Store, n: int, split: str = "train", seed: int = 0) -> list[int]:
    """``n`` new 128x96 noise images, unlabeled, in ``split``; returns their ids."""
    rng = np.random.default_rng(seed)
    return [store.add_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), f"u{seed}-{i}.png", split)[0].id
            for i in range(n)]


def make_store(folder) -> Store:
    """Six labeled training images, five unlabeled ones in train and two in val, a tiny model."""
    store = Store(folder / "data")
    make_demo(store, n_train=6, n_val=0, n_test=0, seed=3, size=(128, 96), video=False)
    add_unlabeled(store, 5, "train")
    add_unlabeled(store, 2, "val", seed=1)
    add_tiny_model(store)
    return store


@pytest.fixture
def pre_store(tmp_path) -> Store:
    return make_store(tmp_path)


@pytest.fixture(scope="module")
def refusing_store(tmp_path_factory) -> Store:
    """The same folder, shared by the bad-input cases: each checks that nothing was stored."""
    return make_store(tmp_path_factory.mktemp("refusing"))


UNCERTAINTY = [
    ([], 0.0),
    ([0.5], 1.0),
    ([0.95], 0.1),
    ([0.05], 0.1),
    ([0.04, 0.01], 0.0),          # under the floor: not counted
    ([0.5, 0.5, 0.9], 2.2),
    ([0.5, float("nan")], 1.0),
    ([1.0, 0.99], 0.02),
]


@pytest.mark.parametrize("scores, expected", UNCERTAINTY)
def test_uncertainty(scores, expected):
    assert prelabel.uncertainty(scores) == pytest.approx(expected)


def test_many_middling_boxes_outrank_confident_ones():
    assert prelabel.uncertainty([0.45, 0.55, 0.6]) > prelabel.uncertainty([0.97, 0.98, 0.99, 0.96, 0.95])


def test_prelabel_stores_suggestions_never_ground_truth(pre_store):
    labeled = {r.id: pre_store.boxes(r.id).xyxy.tolist() for r in pre_store.images(labeled=True)}
    targets = [r.id for r in pre_store.images("train", labeled=False)]
    settings = jobs.prelabel_settings(pre_store, "tiny", "train", score_threshold=0.3, device="cpu")
    assert settings == {"model": "#1", "model_label": "tiny (#1)", "model_id": 1, "split": "train",
                        "score_threshold": 0.3, "device": "cpu", "tiles": "off"}
    run_id = jobs.create_prelabel_run(pre_store, settings)
    run = jobs.run_prelabel(pre_store, run_id)
    assert run.status == "done" and run.iteration == run.total == 5
    sets = [pre_store.suggestions(i) for i in targets]
    assert run.metrics == {"images": 5, "boxes": sum(len(s.boxes) for s in sets)} and run.metrics["boxes"] > 0
    for s in sets:
        assert (s.source, s.model_id, s.run_id, s.score_threshold) == ("tiny (#1)", 1, run_id, 0.3)
        assert np.all(s.boxes.score >= 0.3) and s.uncertainty >= 0 and set(s.boxes.names) == {"cow"}
        assert len(pre_store.boxes(s.image_id)) == 0  # never ground truth
    # an untrained head scores every box about 0.5: the most uncertain kind of image
    assert min(s.uncertainty for s in sets) > 1
    assert {i: pre_store.boxes(i).xyxy.tolist() for i in labeled} == labeled  # labeled images untouched
    assert all(pre_store.suggestions(i) is None for i in labeled)
    assert all(pre_store.suggestions(r.id) is None for r in pre_store.images("val"))  # another split
    assert pre_store.count_states("train") == {"unlabeled": 0, "suggested": 5, "labeled": 6}
    assert pre_store.to_label("train", limit=10)[0].id in targets


def test_tiles_name_the_source_and_unlabeled_takes_every_split(pre_store):
    settings = jobs.prelabel_settings(pre_store, "tiny", "val", score_threshold=0.3, tiles="2x2")
    run = jobs.run_prelabel(pre_store, jobs.create_prelabel_run(pre_store, settings))
    assert run.status == "done" and run.metrics["images"] == 2
    assert pre_store.suggestions(pre_store.images("val")[0].id).source == "tiny (#1) · tiles 2x2"
    settings = jobs.prelabel_settings(pre_store, "tiny", unlabeled=True, score_threshold=0.9)
    run = jobs.run_prelabel(pre_store, jobs.create_prelabel_run(pre_store, settings))
    assert run.status == "done" and run.metrics["images"] == 7 and run.metrics["boxes"] == 0  # none scores 0.9
    assert pre_store.count_states() == {"unlabeled": 0, "suggested": 7, "labeled": 6}
    assert pre_store.suggestions(pre_store.images("val")[0].id).source == "tiny (#1)"  # replaced


def settings_errors():
    return [
        (dict(split="nosuch"), "split: expected one of"),
        (dict(), "split: expected a split name or unlabeled=True"),
        (dict(split="train", unlabeled=True), "not both"),
        (dict(split="test"), "split 'test' has no unlabeled images"),
        (dict(split="train", score_threshold=0), "score_threshold: expected a number between 0 and 1"),
        (dict(split="train", score_threshold=1), "score_threshold"),
        (dict(split="train", score_threshold=float("nan")), "score_threshold"),
        (dict(split="train", score_threshold=-0.5), "score_threshold"),
        (dict(split="train", score_threshold="0.5"), "score_threshold"),
        (dict(split="train", model="nope"), "no version called 'nope'"),
        (dict(split="train", tiles="0x0"), "tiles|grid"),
        (dict(split="train", device="tpu"), "device: expected"),
    ]


@pytest.mark.parametrize("kwargs, message", settings_errors())
def test_bad_settings_are_refused_before_any_work(refusing_store, kwargs, message):
    with pytest.raises(ValueError, match=message):
        jobs.prelabel_settings(refusing_store, **{"model": "tiny", **kwargs})
    assert refusing_store.runs() == []


def test_no_pretrained_weights_is_one_clear_sentence(pre_store, monkeypatch):
    monkeypatch.setattr(prelabel, "coco_weights_available", lambda architecture: False)
    with pytest.raises(ValueError, match=r"^model pretrained \S+ \(cow\+horse\+sheep\): its COCO weights are not on this machine"):
        jobs.prelabel_settings(pre_store, "pretrained", "train")
    with pytest.raises(ValueError, match=r"^model coco fasterrcnn_resnet50_fpn: its COCO weights"):
        jobs.prelabel_settings(pre_store, "coco:fasterrcnn_resnet50_fpn", "train")


def this_run(store: Store, ids: list[int], run_id: int) -> dict[int, tuple]:
    """Image id → (created_at, boxes) of the suggestion sets run ``run_id`` stored."""
    sets = {i: store.suggestions(i) for i in ids}
    return {i: (s.created_at, s.boxes.xyxy.tolist()) for i, s in sets.items() if s is not None and s.run_id == run_id}


def test_stop_resume_kill_9_resume_keeps_everything_and_redoes_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path / "data")
    targets = add_unlabeled(store, 48)
    add_tiny_model(store)
    run_id = jobs.create_prelabel_run(store, jobs.prelabel_settings(store, "tiny", "train", score_threshold=0.3))
    # Stop: the job in this process (a thread: one worker start less), the request from here
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(jobs.run_prelabel, store, run_id, lambda message: None)
        wait_for(lambda: store.run(run_id).iteration >= 4, what="progress")
        jobs.request_stop(store, run_id)
        stopped = running.result(timeout=120)
    assert stopped.status == "stopped"
    first = this_run(store, targets, run_id)
    assert 4 <= len(first) < 48 and stopped.metrics["images"] == len(first)
    assert stopped.metrics["boxes"] == sum(len(b) for _, b in first.values())

    jobs.prepare_resume(store, run_id)  # a worker again, then kill -9 once it has stored more
    pid = jobs.start_worker(store, run_id)
    wait_for(lambda: len(this_run(store, targets, run_id)) >= len(first) + 8, what="more suggestions")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not jobs.pid_alive(pid), what="the worker to die")
    assert jobs.mark_interrupted(store) == [run_id] and store.run(run_id).status == "interrupted"
    second = this_run(store, targets, run_id)
    assert {i: second[i] for i in first} == first  # what the first worker stored was kept, not redone
    assert len(second) < 48, "the worker finished before it was killed: give it more images"

    predicted: list[int] = []
    real = prelabel._suggest

    def recording(box, store_, records, tiles):
        predicted.extend(r.id for r in records)
        return real(box, store_, records, tiles)

    monkeypatch.setattr(prelabel, "_suggest", recording)
    jobs.prepare_resume(store, run_id)
    done = jobs.run_prelabel(store, run_id)  # the CLI's path, in the foreground
    assert done.status == "done" and done.iteration == 48
    assert sorted(predicted) == sorted(set(targets) - set(second))  # only what was missing, each once
    final = this_run(store, targets, run_id)
    assert {i: final[i] for i in second} == second and sorted(final) == targets
    assert done.metrics == {"images": 48, "boxes": sum(len(b) for _, b in final.values())}


def test_cli_prelabel_json_and_models_effort(pre_store):
    data = pre_store.data_dir
    out = cli("prelabel", "--split", "train", "--model", "tiny", "--score-threshold", "0.3", "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    run = pre_store.run(report["run_id"])
    assert report == {"run_id": run.id, "status": "done", "model": "tiny (#1)", "images": 5,
                      "boxes": run.metrics["boxes"]}
    # a person saves two of the suggested images: one as suggested, one with every box deleted;
    # a third image was suggested by the pretrained model and saved unchanged
    kept, emptied = [r.id for r in pre_store.images("train", labeled=False)][:2]
    pre_store.set_boxes(kept, pre_store.suggestions(kept).boxes)
    pre_store.set_boxes(emptied, pre_store.suggestions(emptied).boxes[:0])
    other = pre_store.images("val")[0].id
    pre_store.set_suggestions(other, pre_store.suggestions(kept).boxes[:1], "pretrained ssd_mobilenet_v2_coco (cow+horse+sheep)")
    pre_store.set_boxes(other, pre_store.suggestions(other).boxes)
    n_kept, n_emptied = len(pre_store.boxes(kept)), len(pre_store.suggestions(emptied).boxes)
    models = json.loads(cli("models", "--json", data_dir=data).stdout)
    assert [(m["id"], m["name"]) for m in models] == [(1, "tiny"), (None, "pretrained ssd_mobilenet_v2_coco (cow+horse+sheep)")]
    assert models[0]["effort"] == [{"source": "tiny (#1)", "model_id": 1, "images": 2,
                                    "suggested": n_kept + n_emptied, "unchanged": n_kept, "changed": 0,
                                    "deleted": n_emptied, "added": 0}]
    assert models[1]["effort"][0]["unchanged"] == models[1]["effort"][0]["suggested"] == 1
    text = cli("models", data_dir=data).stdout
    assert f"effort of tiny (#1): 2 images reviewed, {n_kept} of {n_kept + n_emptied} suggested boxes kept" in text


CLI_ERRORS = [
    (["--split", "nosuch"], "split: expected one of"),
    ([], "give --split S .its unlabeled images. or --unlabeled"),
    (["--split", "test"], "no unlabeled images"),
    (["--split", "train", "--score-threshold", "nan"], "--score-threshold: expected a number from 0 to 1"),
    (["--split", "train", "--score-threshold", "1.5"], "--score-threshold: expected a number from 0 to 1"),
    (["--split", "train", "--score-threshold", "0"], "score.threshold"),
    (["--unlabeled", "--model", "nope"], "no version called 'nope'"),
    (["--unlabeled", "--tiles", "banana"], "tiles"),
]


@pytest.mark.parametrize("args, message", CLI_ERRORS)
def test_cli_bad_input_is_one_line_exit_2_and_stores_nothing(refusing_store, args, message):
    data = refusing_store.data_dir
    before = files_of(data)
    out = cli("prelabel", "--model", "tiny", *args, data_dir=data)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, message)
    assert files_of(data) == before and refusing_store.runs() == []
    assert refusing_store.count_states()["suggested"] == 0


def test_cli_without_model_or_pretrained_weights(pre_store, monkeypatch):
    pre_store.delete_model(1)  # 'active' now means 'pretrained'
    monkeypatch.setattr(prelabel, "coco_weights_available", lambda architecture: False)
    out = cli("prelabel", "--unlabeled", data_dir=pre_store.data_dir)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "COCO weights are not on this machine")
    assert pre_store.runs() == []


def test_data_panel_starts_a_run_and_shows_the_states(pre_store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import ui
        ui.prelabel_panel(ui.store())

    monkeypatch.setenv("COWDETECT_DATA_DIR", str(pre_store.data_dir))
    monkeypatch.setattr(jobs, "start_worker", lambda store, run_id: None)  # queued: the test runs it here
    at = AppTest.from_function(page, default_timeout=60)
    at.run()
    assert not at.exception and [m.value for m in at.metric] == ["6", "0", "7"]
    at.selectbox(key="prelabel_split").select("test").run()
    next(b for b in at.button if b.label == "Pre-label").click().run()
    assert "split 'test' has no unlabeled images" in at.error[0].value and pre_store.runs() == []
    at.selectbox(key="prelabel_split").select("train").run()
    at.selectbox(key="prelabel_model").select("#1").run()
    next(b for b in at.button if b.label == "Pre-label").click().run()
    run = pre_store.runs("prelabel")[0]
    assert run.status == "queued" and run.params["split"] == "train" and run.params["model_id"] == 1
    assert any(b.label == "Stop" for b in at.button)  # the queued run's progress and Stop
    jobs.run_prelabel(pre_store, run.id)
    at.run()
    assert [m.value for m in at.metric] == ["6", "5", "2"]
    assert "Review them on the Label page" in at.success[0].value


def test_models_page_shows_the_labeling_effort(pre_store, monkeypatch):
    from cowdetect.detections import Detections

    image = pre_store.images("train", labeled=False)[0].id
    two = Detections.from_names(np.array([[5, 5, 40, 40], [60, 20, 100, 60]], np.float32), ["cow", "cow"],
                                pre_store.class_names(), score=np.array([0.9, 0.6], np.float32))
    pre_store.set_suggestions(image, two, "tiny (#1)", 1)
    pre_store.set_boxes(image, two[[0]])  # one kept, one deleted
    at = open_page("models", pre_store, monkeypatch)
    assert "Labeling effort" in [h.value for h in at.subheader]
    assert at.dataframe[-1].value.to_dict("records") == [{
        "suggestions from": "tiny (#1)", "images reviewed": 1, "boxes suggested": 2, "unchanged": 1,
        "changed": 0, "deleted": 1, "added by hand": 0, "share unchanged": "50%"}]



def test_cli_resumes_an_interrupted_run_without_redoing_images(pre_store):
    settings = jobs.prelabel_settings(pre_store, model="tiny", split="train")
    run_id = jobs.create_prelabel_run(pre_store, settings)
    first = pre_store.images_page(0, 50, "train", labeled=False)[0].id
    pre_store.set_suggestions(first, pre_store.boxes(first), settings["model_label"], 1, run_id)  # done before a kill
    pre_store.update_run(run_id, status="interrupted", pid=None)
    out = cli("worker", str(run_id), data_dir=pre_store.data_dir)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, f"continue it with: python -m cowdetect prelabel --resume {run_id}")
    out = cli("prelabel", "--resume", str(run_id), "--json", data_dir=pre_store.data_dir)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["run_id"], report["status"], report["images"]) == (run_id, "done", 5)
    assert len(pre_store.suggestions(first).boxes) == 0  # kept as stored before, not predicted again
    other = jobs.create_run(pre_store, "evaluate", {"device": "cpu"}, 1)
    out = cli("prelabel", "--resume", str(other), data_dir=pre_store.data_dir)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, f"run {other} is not a pre-label run .its kind: evaluate.")


def test_sigterm_ends_a_cli_run_interrupted_and_resumable(tmp_path):
    """SIGTERM (a service manager, `kill`) to `prelabel` mid-run: before, the process died at once
    and its run stayed 'running'; now it ends as after Ctrl+C: exit 130, the run interrupted, what
    it stored kept."""
    import subprocess
    import sys

    from conftest import ROOT
    store = Store(tmp_path / "data")
    targets = add_unlabeled(store, 200)
    add_tiny_model(store)
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "prelabel", "--split", "train", "--model", "tiny",
                             "--data-dir", str(store.data_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"})
    try:
        wait_for(lambda: store.runs("prelabel") and store.runs("prelabel")[0].iteration >= 1, 120, "progress")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = store.runs("prelabel")[0]
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), (proc.returncode, err)
    assert run.status == "interrupted"
    kept = this_run(store, targets, run.id)
    assert 1 <= len(kept) < 200, "the run finished before the signal: give it more images"
