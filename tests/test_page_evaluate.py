"""The Evaluate page through AppTest: model versions as specs, evaluation in a background worker
(never in the page), the comparison once both are stored, and per-image links to Predictions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from streamlit.testing.v1 import AppTest

from conftest import add_tiny_model, open_page, statuses_until_done
from cowdetect import jobs
from cowdetect.demo import make_demo
from cowdetect.store import Store


@pytest.fixture
def two_versions(tmp_path) -> Store:
    store = Store(tmp_path / "data")
    make_demo(store, n_train=2, n_val=0, n_test=3, seed=3, size=(128, 96), video=False)
    for name in ("before", "after"):
        add_tiny_model(store, name)
    return store


def page(store, monkeypatch) -> AppTest:
    return open_page("evaluate", store, monkeypatch, router=True)  # it links to the Predictions page


def test_nothing_picked(two_versions, monkeypatch):
    at = page(two_versions, monkeypatch)
    assert at.multiselect(key="eval_models").value == ["#1", "#2"]  # the two newest versions, older first
    at.multiselect(key="eval_models").set_value([]).run()
    assert "Pick one or more model versions." in at.info[0].value


def test_evaluate_in_a_worker_then_compare(two_versions, monkeypatch):
    at = page(two_versions, monkeypatch)
    assert "Not evaluated on this version of the test split yet" in at.info[0].value
    at.multiselect(key="eval_models").set_value(["#1"]).run()
    next(b for b in at.button if b.label == "Evaluate 1 model(s) on test").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run, = two_versions.runs("evaluate")
    assert run.pid and run.params["model"] == "#1" and run.params["model_label"] == "before (#1)"
    statuses_until_done(two_versions, run.id)
    # the second version, in the foreground (the CLI's way): the page shows both side by side
    settings = jobs.evaluation_settings(two_versions, "after", "test")
    jobs.run_job(two_versions, jobs.create_evaluation_run(two_versions, settings), log=lambda m: None)
    at.multiselect(key="eval_models").set_value(["#1", "#2"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value.index) == ["before (#1)", "after (#2)"]
    assert at.subheader[0].value.startswith("mAP ") and "→" in at.subheader[0].value
    links = at.dataframe[1].value["open"].tolist()
    assert len(links) == 3 and all(parse_qs(urlparse(u).query)["model"] == ["#2"] for u in links)
    assert at.dataframe[2].value["model"].tolist() == ["after (#2)", "before (#1)"]  # history, newest first
