"""Train page in chromium: start a short run, watch the chart gain points, close the tab, reopen, see it finish."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from apprunner import CHROMIUM, CHROMIUM_ARGS, click, demo_app
from cowdetect.store import Store

ITERATIONS = 8


@pytest.fixture(scope="module")
def train_url(tmp_path_factory):
    with demo_app(tmp_path_factory.mktemp("browser-train") / "data", n_train=6, n_val=2, n_test=2, seed=2,
                  size=(160, 120)) as served:
        yield served


def points_shown(page) -> int:
    text = page.get_by_text(re.compile(r"\d+ points")).first.inner_text(timeout=60_000)
    return int(re.search(r"(\d+) points", text).group(1))


class StatusLog:
    """Polls the store from a thread: each status change of the newest training run, with its time."""

    def __init__(self, data_dir: Path) -> None:
        self.seen: list[tuple[str, int, float]] = []  # (status, iteration, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(data_dir,), daemon=True)
        self._thread.start()

    def _poll(self, data_dir: Path) -> None:
        store = Store(data_dir)
        while not self._stop.is_set():
            runs = store.runs("train")
            if runs and (not self.seen or runs[0].status != self.seen[-1][0]):
                self.seen.append((runs[0].status, runs[0].iteration, time.monotonic()))
            self._stop.wait(0.05)

    def first(self, status: str) -> float:
        return next(t for s, _, t in self.seen if s == status)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return [s for s, _, _ in self.seen]


def test_run_survives_a_closed_tab(train_url):
    from playwright.sync_api import sync_playwright

    url, store = train_url
    log = StatusLog(store.data_dir)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url + "/train")
            page.get_by_label("Iterations").fill(str(ITERATIONS))
            page.get_by_label("Checkpoint every").fill("4")
            page.get_by_label("Validate every").fill("4")
            click(page, page.get_by_role("button", name="Start training"))
            page.get_by_text(re.compile(r"[1-9]\d* points")).first.wait_for(timeout=120_000)
            first = points_shown(page)
            # the chart gains points while the page is open (the fragment reruns every 2 s)
            page.wait_for_function("first => [...document.body.innerText.matchAll(/(\\d+) points/g)]"
                                   ".some(m => Number(m[1]) > first)", arg=first, timeout=60_000)
            page.locator('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]').first.wait_for()
            page.close()  # the run goes on without a browser
            closed_at = time.monotonic()
            run = store.runs("train")[0]
            assert run.status == "running" and run.iteration < ITERATIONS, run  # closed mid-run
            again = browser.new_page(viewport={"width": 1280, "height": 1000})
            again.goto(url + "/train")
            again.get_by_text(re.compile(r"Moo! mAP50")).first.wait_for(timeout=480_000)
            assert store.run(run.id).status == "done" and store.run(run.id).iteration == ITERATIONS
            assert not again.locator('[data-testid="stException"]').count()
            again.screenshot(path=str(Path(store.data_dir) / "train.png"), full_page=True)
            browser.close()
    finally:
        statuses = log.stop()
    # in order: queued (when the thread saw it before the worker took it), running, done; and the
    # tab was closed while it ran
    assert statuses in (["queued", "running", "done"], ["running", "done"]), log.seen
    assert log.first("running") < closed_at < log.first("done"), (log.seen, closed_at)
    assert log.seen[-1][1] == ITERATIONS
    assert store.run(run.id).checkpoint_iteration == ITERATIONS and store.points(run.id, "val")
