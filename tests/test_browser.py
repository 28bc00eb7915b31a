"""The app in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("COWDETECT_REQUIRE_BROWSER") == "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
    env = {**os.environ, "COWDETECT_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(10)


def test_home_page_in_chromium(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.get_by_text("Labeled images").wait_for(timeout=60_000)
        metric = page.locator('[data-testid="stMetric"]', has_text="Images").first
        assert metric.inner_text().split()[-1] == "5"
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "home.png"))
        assert not page.locator('[data-testid="stException"]').count()
        browser.close()
