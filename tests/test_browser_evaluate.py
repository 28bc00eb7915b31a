"""Evaluate page in chromium: two model versions, the comparison chart, the per-image table, and two
clicks from the dashboard to the worst image's missed cows on the Predictions page."""

from __future__ import annotations

import re

from apprunner import click, demo_app
from conftest import add_tiny_model
from cowdetect import jobs


def test_compare_two_versions_and_open_the_worst_image(tmp_path):
    from playwright.sync_api import sync_playwright

    from apprunner import CHROMIUM, CHROMIUM_ARGS

    with demo_app(tmp_path / "data", n_train=2, n_val=0, n_test=5, seed=4, size=(160, 120)) as (url, store):
        for name in ("before", "after"):
            add_tiny_model(store, name)
            settings = jobs.evaluation_settings(store, name, "test")
            jobs.run_job(store, jobs.create_evaluation_run(store, settings), log=lambda m: None)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url + "/evaluate")
            page.get_by_text(re.compile(r"^mAP \d\.\d{3} → \d\.\d{3}")).wait_for(timeout=60_000)
            charts = page.locator('[data-testid="stVegaLiteChart"], [data-testid="stArrowVegaLiteChart"]')
            charts.first.wait_for(timeout=30_000)
            assert charts.count() >= 2  # the bars and the precision-recall curves
            page.get_by_text("Per image, worst first").wait_for()
            assert not page.locator('[data-testid="stException"]').count()
            # click 2: the worst image's link above the per-image table
            worst = sorted(jobs.cached_evaluation(store, jobs.evaluation_settings(store, "after", "test"))
                           .metrics["per_image"], key=lambda r: (r["ap"] < 0, r["ap"], -r["fn"]))[0]
            click(page, page.get_by_role("link", name=re.compile(f"Image #{worst['image_id']}:")))
            page.get_by_text("Missed cows").wait_for(timeout=60_000)
            assert page.get_by_text(f"#{worst['image_id']} ").count()
            missed = page.locator('[data-testid="stMetric"]').filter(has_text="Missed cows").inner_text()
            assert missed.split()[-1] == str(worst["fn"]), missed  # at score >= 0.5, as the evaluation counted
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(tmp_path / "evaluate.png"), full_page=True)
            browser.close()
