"""The demo generator: deterministic, boxes inside images, the variety the issue asks for."""

import numpy as np

from cowdetect.demo import demo_image, make_demo, render_scene, render_video
from cowdetect.images import load_image
from cowdetect.store import Store


def test_deterministic_by_seed():
    a, boxes_a = demo_image(0, "train", 3, 160, 120)
    b, boxes_b = demo_image(0, "train", 3, 160, 120)
    c, _ = demo_image(1, "train", 3, 160, 120)
    assert a == b and np.array_equal(boxes_a.xyxy, boxes_b.xyxy) and a != c


def test_boxes_inside_and_variety():
    counts = []
    for i in range(40):
        rgb, boxes = render_scene(np.random.default_rng([7, i]), 200, 150)
        assert rgb.shape == (150, 200, 3)
        b = np.array(boxes).reshape(-1, 4)
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 200).all() and (b[:, 3] <= 150).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        counts.append(len(boxes))
    assert 0 in counts and max(counts) >= 3  # empty pastures and herds


def test_cows_are_drawn_where_the_boxes_are():
    rgb, boxes = render_scene(np.random.default_rng([0, 1, 0]), 320, 240, n_cows=3)
    grass_rgb, no_boxes = render_scene(np.random.default_rng([0, 1, 0]), 320, 240, n_cows=0)
    assert no_boxes == []
    for x0, y0, x1, y1 in boxes:
        inside = np.abs(rgb[int(y0):int(y1), int(x0):int(x1)].astype(int)
                        - grass_rgb[int(y0):int(y1), int(x0):int(x1)].astype(int)).sum(-1)
        assert (inside > 60).mean() > 0.2  # a cow changes a good part of its box


def test_make_demo_into_store(tmp_path):
    store = Store(tmp_path / "d")
    summary = make_demo(store, n_train=5, n_val=1, n_test=3, size=(128, 96), video=False)
    assert summary["images_added"] == 9
    assert store.counts()["splits"] == {"train": 5, "val": 1, "test": 3, "unassigned": 0}
    for rec in store.images():
        assert load_image(rec.path).shape == (96, 128, 3)
    again = make_demo(store, n_train=5, n_val=1, n_test=3, size=(128, 96), video=False)
    assert again["images_added"] == 0 and len(store.images()) == 9


def test_video_ground_truth():
    frames = list(render_video(seed=0, width=320, height=180, fps=10, seconds=12))
    assert len(frames) == 120
    ids_per_frame = [{tid for tid, _, _ in truth} for _, truth in frames]
    assert max(len(ids) for ids in ids_per_frame) >= 4
    # cow 3 leaves the frame and comes back
    present = [3 in ids for ids in ids_per_frame]
    first_gone = present.index(False)
    assert any(present[first_gone:])
    for frame, truth in frames:
        for _, (x0, y0, x1, y1), vis in truth:
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 180 and 0 < vis <= 1
    # cows 1 and 2 cross: their horizontal order flips
    def cx(truth, tid):
        return next(((b[0] + b[2]) / 2 for t, b, _ in truth if t == tid), None)
    orders = [np.sign(cx(t, 1) - cx(t, 2)) for _, t in frames if cx(t, 1) is not None and cx(t, 2) is not None]
    assert 1 in orders and -1 in orders
