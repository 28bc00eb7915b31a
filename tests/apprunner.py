"""Start the Streamlit app on a free local port (for browser tests and README screenshots)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("COWDETECT_REQUIRE_BROWSER") == "1"


def require_chromium() -> None:
    """Skip the test without chromium, or fail it where COWDETECT_REQUIRE_BROWSER=1 (CI)."""
    import pytest

    if not Path(CHROMIUM).exists():
        if REQUIRED:
            pytest.fail(f"chromium not found at {CHROMIUM} (install Debian's chromium)")
        pytest.skip("chromium is not installed; set COWDETECT_REQUIRE_BROWSER=1 to make this a failure")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(data_dir: Path, timeout: float = 60.0, options: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `streamlit run app.py` on the data folder; yields the URL once /_stcore/health is ok.
    ``options``: more Streamlit command-line options, e.g. ("--server.maxUploadSize", "1")."""
    port = free_port()
    env = {**os.environ, "COWDETECT_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true", *options],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"streamlit did not start within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def settle(page, timeout: float = 60) -> None:
    """Wait until the app's run is over and every element on the page is from it (none stale):
    a person clicks what the page shows; a button still drawn by the run before belongs to the
    previous image, and the page ignores a click on it."""
    deadline, quiet = time.monotonic() + timeout, 0
    running = ('[data-stale="true"], [data-testid="stStatusWidgetRunningIcon"], '
               '[data-testid="stStatusWidgetRunningManIcon"]')
    while quiet < 3:
        quiet = 0 if page.locator(running).count() else quiet + 1
        assert time.monotonic() < deadline, "the page did not settle"
        page.wait_for_timeout(100)


def set_slider(page, value: float, timeout: float = 60) -> None:
    """Move the page's first slider to ``value`` one key press at a time, each on the slider the
    settled page shows: a press that lands while a rerun redraws it is lost, so the value is read
    back, not assumed."""
    deadline = time.monotonic() + timeout
    while True:
        settle(page)
        slider = page.get_by_role("slider").first
        now = float(page.locator('[data-testid="stSliderThumbValue"]').first.inner_text(timeout=30_000))
        if abs(now - value) < 1e-6:
            return
        assert time.monotonic() < deadline, f"the slider stays at {now}, not {value}"
        slider.focus()
        slider.press("ArrowLeft" if now > value else "ArrowRight")


def click(page, locator, timeout: float = 60) -> None:
    """Click ``locator`` on the settled page: a click on a button that a still-running rerun is
    about to replace is lost (the app never hears it), as a person's would be; they click what
    the finished page shows."""
    locator.wait_for(state="visible", timeout=timeout * 1000)  # a button a later run draws: that run, then settle
    settle(page, timeout)
    locator.click(timeout=timeout * 1000)


@contextlib.contextmanager
def demo_app(data_dir: Path, **demo: Any) -> Iterator[tuple[str, Any]]:
    """Chromium checked, a small demo data folder made, the app served: yields (url, store)."""
    require_chromium()
    from cowdetect.demo import make_demo
    from cowdetect.store import Store

    store = Store(data_dir)
    make_demo(store, video=False, **demo)
    try:
        with serve_app(data_dir) as url:
            yield url, store
    finally:
        # Workers outlive the app by design; a test must not leave one training.
        from cowdetect.jobs import pid_alive
        for run in store.runs():
            if run.pid != os.getpid() and pid_alive(run.pid):  # a run the test ran itself is done
                os.kill(run.pid, signal.SIGTERM)
