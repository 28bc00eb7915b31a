"""Evaluation: COCO results files that pycocotools re-checks, evaluation jobs with a cache, bad input,
and the Predictions and Evaluate pages."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import add_tiny_model, open_page
from cowdetect import jobs
from cowdetect.cli import main
from cowdetect.demo import make_demo
from cowdetect.detections import Detections
from cowdetect.formats import coco_results, export_coco
from cowdetect.metrics import evaluate_detections
from cowdetect.store import Store


@pytest.fixture
def eval_store(tmp_path) -> Store:
    store = Store(tmp_path / "data")
    make_demo(store, n_train=2, n_val=0, n_test=6, seed=3, size=(128, 96), video=False)
    add_tiny_model(store)
    return store


def pycocotools_map(store: Store, split: str, detections: list[dict], tmp_path) -> float:
    (tmp_path / "gt.json").write_text(json.dumps(export_coco(store, split)))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_results_file_rechecks_with_pycocotools(eval_store, tmp_path, backend):
    """Jittered ground truth plus false positives, written in COCO results format with export-coco's ids:
    pycocotools on those files gives our numbers to 1e-6."""
    rng = np.random.default_rng(0)
    dataset = eval_store.dataset("test")
    preds = []
    for sample in dataset:
        boxes = sample.boxes.xyxy + rng.normal(0, 3, sample.boxes.xyxy.shape).astype(np.float32)
        extra = rng.uniform(0, 60, (2, 2)).astype(np.float32)
        boxes = np.concatenate([boxes, np.concatenate([extra, extra + 30], axis=1)]).clip(0, 96)
        preds.append(Detections.from_names(boxes, ["cow"] * len(boxes), eval_store.class_names(),
                                           rng.uniform(0.1, 1.0, len(boxes)).astype(np.float32)))
    ours = evaluate_detections(preds, [s.boxes for s in dataset], [s.image_id for s in dataset], backend=backend)
    theirs = pycocotools_map(eval_store, "test", coco_results(eval_store, preds, [s.image_id for s in dataset]),
                             tmp_path)
    assert ours.map == pytest.approx(theirs[0], abs=1e-6) and ours.map_50 == pytest.approx(theirs[1], abs=1e-6)
    assert 0.05 < ours.map < 1.0
    curve = ours.pr_curve["cow"]
    assert len(curve) == 101 and curve[0] >= max(v for v in curve)  # interpolated precision never rises
    assert ours.per_class["cow"]["ap_50"] == pytest.approx(ours.map_50, abs=1e-6)


def test_cli_predictions_file(eval_store, tmp_path, capsys):
    out = tmp_path / "detections.json"
    assert main(["evaluate", "--model", "tiny", "--split", "test", "--predictions", str(out), "--json",
                 "--data-dir", str(eval_store.data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    detections = json.loads(out.read_text())
    assert detections and set(detections[0]) == {"image_id", "category_id", "bbox", "score"}
    ids = {im["id"] for im in export_coco(eval_store, "test")["images"]}
    assert {d["image_id"] for d in detections} <= ids
    theirs = pycocotools_map(eval_store, "test", detections, tmp_path)
    assert report["map"] == pytest.approx(theirs[0], abs=1e-6) and report["map_50"] == pytest.approx(theirs[1], abs=1e-6)


def test_evaluation_job_is_cached_by_model_and_split_content(eval_store):
    settings = jobs.evaluation_settings(eval_store, "tiny", "test")
    assert jobs.cached_evaluation(eval_store, settings) is None
    run = jobs.run_job(eval_store, jobs.create_evaluation_run(eval_store, settings), log=lambda m: None)
    assert run.status == "done" and run.iteration == 6
    cached = jobs.cached_evaluation(eval_store, settings)
    assert cached.id == run.metrics["result_id"] and len(cached.metrics["per_image"]) == 6
    assert cached.model_id == 1 and cached.model_label == "tiny (#1)" and cached.metrics["pr_curve"]["cow"]
    # new boxes on a test image: a different split content, so no cached result for it
    image = eval_store.dataset("test")[0].image_id
    eval_store.set_boxes(image, Detections.from_names([[1, 1, 20, 20]], ["cow"], eval_store.class_names()))
    assert jobs.cached_evaluation(eval_store, jobs.evaluation_settings(eval_store, "tiny", "test")) is None


def test_evaluation_bad_input(eval_store):
    with pytest.raises(ValueError, match="no labeled images"):
        jobs.evaluation_settings(eval_store, "tiny", "val")
    for sample in eval_store.dataset("train"):  # labeled, but no cow anywhere
        eval_store.set_boxes(sample.image_id, Detections.empty(eval_store.class_names()))
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        jobs.evaluation_settings(eval_store, "tiny", "train")
    from conftest import FRCNN, TINY
    from cowdetect import DetectorBox
    sheep = DetectorBox(FRCNN, weights=None, classes=("sheep",), device="cpu", **TINY)
    eval_store.add_model("sheep", sheep.architecture, sheep.classes, sheep.save(eval_store.data_dir / "sheep.pt"))
    with pytest.raises(ValueError, match="share no name with the dataset"):
        jobs.evaluation_settings(eval_store, "sheep", "test")


def test_predictions_page(eval_store, monkeypatch):
    at = open_page("predictions", eval_store, monkeypatch)
    at.selectbox(key="pred_model").select("#1").run()
    at.slider(key="pred_threshold").set_value(0.05).run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label for m in at.metric}
    assert labels == {"True positives", "False positives", "Missed cows"}
    table = at.dataframe[0].value
    assert list(table.columns)[:3] == ["pred_classes", "class_names", "detectron2 id"] and "result" in table
    at.radio(key="pred_order").set_value("worst first").run()
    assert "No evaluation of this model yet" in at.info[0].value
    at.toggle(key="pred_overlay").set_value(True).run()
    assert len(at.get("image")) == 1


def test_predictions_page_deleted_image(eval_store, monkeypatch):
    settings = jobs.evaluation_settings(eval_store, "tiny", "test")
    jobs.run_job(eval_store, jobs.create_evaluation_run(eval_store, settings), log=lambda m: None)
    worst = sorted(jobs.cached_evaluation(eval_store, settings).metrics["per_image"],
                   key=lambda r: (r["ap"] < 0, r["ap"], -r["fn"]))[0]["image_id"]
    eval_store.delete_image(worst)
    at = open_page("predictions", eval_store, monkeypatch)
    at.selectbox(key="pred_model").select("#1").run()
    at.radio(key="pred_order").set_value("worst first").run()
    assert f"Image {worst} was deleted" in at.warning[0].value
