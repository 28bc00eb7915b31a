"""Shared fixtures: tiny synthetic images, a tiny demo store, tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# One torch thread per process: tests start workers and CLI processes beside this one, and on two
# cores two processes with all threads each slow each other ~10x. Set before torch is imported.
os.environ.setdefault("COWDETECT_THREADS", "1")

from cowdetect import DetectorBox, LabeledDataset  # noqa: E402
from cowdetect.demo import make_demo  # noqa: E402
from cowdetect.store import Store  # noqa: E402

SHARED_REAL = ROOT.parent / "shared" / "real"
TINY = {"min_size": 128, "max_size": 128}
# the tiny-image tests use a Faster R-CNN: its resize bounds shrink to 128 px (SSD is fixed at 300)
FRCNN = "fasterrcnn_mobilenet_v3_large_320_fpn"


def blocks_dataset(n: int = 4, seed: int = 0) -> LabeledDataset:
    """Bright rectangles ("cows") on grass, 128x96 px; one image in four has no cow."""
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for i in range(n):
        img = np.full((96, 128, 3), (60, 140, 60), np.uint8)
        if i % 4 == 3:
            images.append(img)
            boxes.append(np.zeros((0, 4)))
            labels.append([])
            continue
        x, y = int(rng.integers(4, 70)), int(rng.integers(4, 50))
        img[y:y + 40, x:x + 50] = (240, 240, 235)
        images.append(img)
        boxes.append([[x, y, x + 50, y + 40]])
        labels.append(["cow"])
    return LabeledDataset.from_lists(images, boxes, labels, name="blocks")


@pytest.fixture
def blocks() -> LabeledDataset:
    return blocks_dataset()


def new_tiny_box() -> DetectorBox:
    """An untrained tiny Faster R-CNN (cow + background, 128 px), the same weights every time."""
    import torch
    torch.manual_seed(0)
    return DetectorBox(FRCNN, weights=None, device="cpu", **TINY)


@pytest.fixture
def tiny_box() -> DetectorBox:
    return new_tiny_box()


@pytest.fixture(scope="module")
def tiny() -> DetectorBox:
    """The tiny untrained detector with its score floor at 0, so that it does output boxes."""
    box = new_tiny_box()
    box.model.roi_heads.score_thresh = 0.0  # an untrained head scores low: let boxes through
    return box


class RecordingDetector:
    """A real detector, recording the frames it is asked to detect (their sizes) and its outputs."""

    def __init__(self, box: DetectorBox) -> None:
        self.box, self.sizes, self.outputs = box, [], []

    def __getattr__(self, name):
        return getattr(self.box, name)

    def predict(self, images, **kwargs):
        self.sizes += [im.shape for im in images]
        out = self.box.predict(images, **kwargs)
        self.outputs += out
        return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A tiny demo data folder (128x96 images, no video), shared read-only by tests."""
    s = Store(tmp_path_factory.mktemp("demo") / "data")
    make_demo(s, n_train=6, n_val=2, n_test=4, seed=1, size=(128, 96), video=False)
    return s


def add_tiny_model(store: Store, name: str = "tiny") -> str:
    """Store an untrained tiny Faster R-CNN (cow + background, 128 px) as a model version; returns its name."""
    import tempfile
    box = new_tiny_box()
    with tempfile.TemporaryDirectory() as tmp:
        store.add_model(name, box.architecture, box.classes, box.save(Path(tmp) / "tiny.pt"), None,
                        {"note": "untrained, for tests"})
    return name


@pytest.fixture
def video_store(tmp_path: Path) -> Store:
    """A data folder with a 2 s, 160x96, 10 fps demo video (MOT ground truth) and a tiny model."""
    from cowdetect.demo import make_demo_video

    s = Store(tmp_path / "data")
    make_demo_video(s, seconds=2.0, fps=10, size=(160, 96))
    add_tiny_model(s)
    return s


def open_page(name: str, store: Store, monkeypatch: pytest.MonkeyPatch, router: bool = False):
    """An AppTest of app_pages/<name>.py on ``store``'s data folder, run once without exceptions.
    ``router``: run it through app.py's st.navigation (needed by pages that link to others)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("COWDETECT_DATA_DIR", str(store.data_dir))
    if router:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page(f"app_pages/{name}.py")
    else:
        at = AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def job_store_small(tmp_path: Path) -> Store:
    """A tiny labeled demo folder (six 128x96 training images) for training jobs."""
    s = Store(tmp_path / "data")
    make_demo(s, n_train=6, n_val=0, n_test=0, seed=3, size=(128, 96), video=False)
    return s


def wait_for(predicate, timeout: float = 240.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something true (returned), failing after ``timeout`` s."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def statuses_until_done(store: Store, run_id: int, timeout: float = 120.0) -> list[str]:
    """The statuses a background run passes through, in order, waiting (polling) until it is done.
    Fails at once on any status but queued / running before done, and after ``timeout`` seconds."""
    import time
    seen = [store.run(run_id).status]
    deadline = time.monotonic() + timeout
    while seen[-1] != "done":
        assert seen[-1] in ("queued", "running"), store.run(run_id)
        assert time.monotonic() < deadline, store.run(run_id)
        time.sleep(0.2)
        status = store.run(run_id).status
        if status != seen[-1]:
            seen.append(status)
    return seen


def run_with_switch(store: Store) -> tuple[int, "pd.DataFrame"]:
    """A finished tracking run on ``store``'s demo video whose tracks are the ground truth with one
    identity switch (the first cow's track is renamed 99 from frame 11 on), written as the job
    writes them, with its frames to label found. Returns (run id, the track table)."""
    import pandas as pd

    from cowdetect import jobs
    from cowdetect.mot import read_mot

    video = store.videos()[0]
    truth = read_mot(video.gt_path)
    truth = truth[truth["conf"] != 0]
    cow = int(truth["id"].iloc[0])
    rows = pd.DataFrame({"frame": truth["frame"], "time_s": (truth["frame"] - 1) / video.fps,
                         "id": np.where((truth["id"] == cow) & (truth["frame"] >= 11), 99, truth["id"]),
                         "x1": truth["x"], "y1": truth["y"], "x2": truth["x"] + truth["w"],
                         "y2": truth["y"] + truth["h"], "score": 0.8, "detected": 1})
    run_id = jobs.create_tracking_run(store, jobs.tracking_settings(store, video.id, model="tiny", detect_every=1))
    files = jobs.track_outputs(store, run_id)
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(files["csv"], index=False)
    files["mot"].write_text("".join(f"{r.frame},{r.id},{r.x1},{r.y1},{r.x2 - r.x1},{r.y2 - r.y1},{r.score},-1,-1,-1\n"
                                    for r in rows.itertuples()))
    store.update_run(run_id, status="done", iteration=int(video.frames))
    store.update_run(run_id, metrics={"to_label": jobs.find_frames_to_label(store, run_id)})
    return run_id, rows


@pytest.fixture(scope="module", autouse=True)
def one_browser_file_at_a_time(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The suite runs on two pytest-xdist workers, a whole file on one worker in order (pytest.ini:
    --dist loadfile). A browser file holds a lock shared by the workers while it runs: each drives a
    Streamlit server, chromium and often a job worker, and two at once on two cores made Playwright's
    waits time out. (xdist's loadgroup would keep them on one worker, but it ran a file's tests out of
    order here, and one browser test follows another.)"""
    if not request.path.name.startswith("test_browser"):
        yield
        return
    import fcntl

    # every worker's basetemp (…/popen-gwN) shares this parent; without xdist it is pytest's own root
    with open(tmp_path_factory.getbasetemp().parent / "browser-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

