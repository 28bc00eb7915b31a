"""The app in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from apprunner import CHROMIUM_ARGS, serve_app

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("COWDETECT_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if REQUIRED:
            pytest.fail(f"chromium not found at {CHROMIUM} (install Debian's chromium)")
        pytest.skip("chromium is not installed; set COWDETECT_REQUIRE_BROWSER=1 to make this a failure")
    from cowdetect.demo import make_demo
    from cowdetect.store import Store

    data = tmp_path_factory.mktemp("browser") / "data"
    make_demo(Store(data), n_train=3, n_val=0, n_test=2, size=(160, 120), video=False)
    with serve_app(data) as url:
        yield url


def test_home_page_in_chromium(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.get_by_text("Labeled images", exact=True).wait_for(timeout=60_000)
        metric = page.locator('[data-testid="stMetric"]', has_text="Images").first
        assert metric.inner_text().split()[-1] == "5"
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "home.png"))
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()
