"""The Train and Models pages through AppTest, with a real background worker and a tiny model."""

from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, add_tiny_model, statuses_until_done
from cowdetect.demo import make_demo
from cowdetect.store import Store

TINY_BASE = "untrained:fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture
def page_store(tmp_path, monkeypatch) -> Store:
    store = Store(tmp_path / "data")
    make_demo(store, n_train=6, n_val=2, n_test=2, seed=5, size=(128, 96), video=False)
    monkeypatch.setenv("COWDETECT_DATA_DIR", str(store.data_dir))
    return store


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_start_a_run_and_see_it_finish(page_store):
    at = page("train")
    assert "No training run yet" in " ".join(i.value for i in at.info)
    at.selectbox[0].select(TINY_BASE)
    at.number_input(key="iterations").set_value(2)  # tiny: what is checked is the page and the worker
    at.number_input(key="checkpoint_every").set_value(2)
    at.number_input(key="eval_every").set_value(2)
    button(at, "Estimate duration").click().run()  # nothing measured yet, and the page does not train to measure
    assert "the time left appears once the run has done a few iterations" in at.info[0].value
    assert page_store.runs() == []
    button(at, "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = page_store.runs("train")
    assert len(runs) == 1 and runs[0].pid and runs[0].params["base"] == TINY_BASE
    pid = runs[0].pid
    button(at, "Start training").click().run()  # a second click while it runs: still one job, one worker
    assert len(page_store.runs("train")) == 1
    seen = statuses_until_done(page_store, runs[0].id, timeout=240)
    assert seen in (["queued", "running", "done"], ["running", "done"], ["queued", "done"], ["done"]), seen
    assert page_store.run(runs[0].id).pid == pid and page_store.run(runs[0].id).iteration == 2
    at.run()
    assert {m.label for m in at.metric} >= {"mAP50 on test", "mAP on test", "mAP75 on test"}
    assert "Moo! mAP50" in at.code[0].value
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) >= 1
    button(at, "Estimate duration").click().run()  # now measured on the finished run
    assert "s per iteration on earlier runs of fasterrcnn_mobilenet_v3_large_320_fpn" in at.info[0].value


def test_too_few_images_is_explained(tmp_path, monkeypatch):
    store = Store(tmp_path / "few")
    make_demo(store, n_train=2, n_val=0, n_test=0, size=(96, 64), video=False)
    monkeypatch.setenv("COWDETECT_DATA_DIR", str(store.data_dir))
    at = page("train")
    button(at, "Start training").click().run()
    assert "label at least 3 more" in at.error[0].value and store.runs() == []


def test_models_page_sets_active_renames_and_deletes(page_store):
    for name in ("first", "second"):
        add_tiny_model(page_store, name)
    ids = {m.name: m.id for m in page_store.models()}
    second_file = page_store.model(ids["second"]).checkpoint
    assert second_file.is_file()
    at = page("models")
    assert page_store.active_model().name == "second"  # the newest, until one is set
    at.selectbox(key="version").select(ids["first"]).run()  # in a browser, choosing reruns before any click
    button(at, "Set active").click().run()
    assert page_store.active_model().name == "first"
    assert at.success[0].value == f"first (#{ids['first']}) is now the active model."
    button(at, "Rename").click().run()
    assert "type the new name first" in at.error[0].value
    at.text_input(key="new_name").set_value("second")
    button(at, "Rename").click().run()
    assert "is taken" in at.error[0].value and [m.name for m in page_store.models()] == ["first", "second"]
    at.text_input(key="new_name").set_value("herd-v1")
    button(at, "Rename").click().run()
    assert [m.name for m in page_store.models()] == ["herd-v1", "second"]
    assert at.success[0].value == f"Renamed first (#{ids['first']}) to herd-v1 (#{ids['first']})."
    assert at.text_input(key="new_name").value == ""
    at.selectbox(key="version").select(ids["second"]).run()
    assert button(at, "Delete").disabled  # until confirmed
    at.checkbox(key="sure").check().run()
    button(at, "Delete").click().run()
    assert [m.name for m in page_store.models()] == ["herd-v1"]
    assert at.success[0].value == f"Deleted second (#{ids['second']})."
    assert not second_file.exists()
    assert not at.checkbox(key="sure").value and button(at, "Delete").disabled  # the next delete asks again
