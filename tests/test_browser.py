"""The app in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import pytest

from apprunner import CHROMIUM, CHROMIUM_ARGS, demo_app


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with demo_app(tmp_path_factory.mktemp("browser") / "data", n_train=3, n_val=0, n_test=2,
                  size=(160, 120)) as (url, _):
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
