"""Train page in chromium: start a short run, watch the chart gain points, close the tab, reopen, see it finish."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from apprunner import CHROMIUM, CHROMIUM_ARGS, demo_app


@pytest.fixture(scope="module")
def train_url(tmp_path_factory):
    with demo_app(tmp_path_factory.mktemp("browser-train") / "data", n_train=6, n_val=2, n_test=2, seed=2,
                  size=(160, 120)) as served:
        yield served

def points_shown(page) -> int:
    text = page.get_by_text(re.compile(r"\d+ points")).first.inner_text(timeout=60_000)
    return int(re.search(r"(\d+) points", text).group(1))


def test_run_survives_a_closed_tab(train_url):
    from playwright.sync_api import sync_playwright

    url, store = train_url
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url + "/train")
        page.get_by_label("Iterations").fill("24")
        page.get_by_label("Checkpoint every").fill("8")
        page.get_by_label("Validate every").fill("12")
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"[1-9]\d* points")).first.wait_for(timeout=120_000)
        first = points_shown(page)
        deadline = time.monotonic() + 60
        while points_shown(page) <= first:
            assert time.monotonic() < deadline, "the chart gained no points"
            time.sleep(1)
        page.locator('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]').first.wait_for()
        page.close()  # the run goes on without a browser
        run = store.runs("train")[0]
        assert run.status in ("queued", "running", "done")
        again = browser.new_page(viewport={"width": 1280, "height": 1000})
        again.goto(url + "/train")
        again.get_by_text(re.compile(r"Moo! mAP50")).first.wait_for(timeout=480_000)
        assert store.run(run.id).status == "done" and store.run(run.id).iteration == 24
        assert not again.locator('[data-testid="stException"]').count()
        again.screenshot(path=str(Path(store.data_dir) / "train.png"), full_page=True)
        browser.close()
