"""Sliced inference: settings, the tile grid, merging, and tiles through predict, evaluate, tracking and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from cowdetect.detections import BACKGROUND, Detections
from cowdetect.tiling import (MAX_TILES, MIN_TILE, auto_grid, detect_tiled, merge, parse_tiles, tile_windows,
                              tiles_text)

NAMES = (BACKGROUND, "cow", "dog")


@pytest.mark.parametrize("spec, expected", [
    ("off", "off"), (None, "off"), ("auto", "auto"), ("3x3", (3, 3)), ("2X4", (2, 4)), (" 1x2 ", (1, 2)),
    ((2, 3), (2, 3)), ("16x16", (16, 16)),
])
def test_parse_tiles(spec, expected):
    assert parse_tiles(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("0x3", "1 to 16 rows and columns"), ("3x0", "1 to 16"), ("17x2", "1 to 16"), ("3", "expected auto"),
    ("axb", "expected auto"), ("", "expected auto"), (3, "expected auto"), ("on", "expected auto"),
])
def test_bad_tiles_name_what_is_valid(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tiles(spec)


def test_tiles_text_is_one_spelling():
    assert [tiles_text(s) for s in ("off", None, "auto", "2X3", (4, 4))] == ["off", "off", "auto", "2x3", "4x4"]


@pytest.mark.parametrize("width, height, rows, cols", [(640, 427, 3, 4), (1920, 1080, 4, 7), (300, 300, 2, 2)])
def test_windows_cover_the_image_and_overlap(width, height, rows, cols):
    windows = tile_windows(width, height, rows, cols)
    assert len(windows) == rows * cols
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    if cols > 1:  # neighbours share a quarter of a tile
        (a, _, a1, _), (b, _, _, _) = windows[0], windows[1]
        assert a1 - b == pytest.approx(0.25 * (a1 - a), abs=2)


@pytest.mark.parametrize("width, height, rows, cols", [(1, 1, 2, 2), (100, 100, 4, 4), (60000, 1, 1, 2)])
def test_tiles_too_small_for_the_image_are_refused(width, height, rows, cols):
    with pytest.raises(ValueError, match=f"at least {MIN_TILE} px"):
        tile_windows(width, height, rows, cols)


def test_auto_grid_follows_image_and_input_size():
    assert auto_grid(128, 96, 300) is None  # too small to magnify
    assert auto_grid(640, 427, 300) == (3, 4)  # 150 px tiles: each cow shown twice as large
    rows, cols = auto_grid(3840, 2160, 300)
    assert rows * cols <= MAX_TILES and cols > rows
    assert auto_grid(640, 427, 800) is None  # a model that already sees 800 px needs no tiles here


def det(boxes, scores, classes=None):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), classes or [1] * len(boxes), scores, NAMES)


def test_merge_keeps_the_best_of_duplicates_and_drops_nested_parts():
    whole = det([[10, 10, 110, 90], [200, 200, 220, 215]], [0.9, 0.3])
    tile = det([[12, 11, 108, 92], [20, 20, 50, 45], [201, 200, 221, 214], [400, 10, 420, 30]], [0.8, 0.6, 0.7, 0.5])
    other_class = det([[20, 20, 50, 45]], [0.95], [2])
    merged = merge(whole, [(tile, np.zeros(4, bool)), (other_class, np.zeros(1, bool))])
    got = sorted((n, round(float(s), 2)) for n, s in zip(merged.names, merged.score))
    # the cow seen twice → once (0.9); its head seen as a cow by a tile → dropped; the small cow → the
    # better score; the dog in the same place is another class → kept
    assert got == [("cow", 0.5), ("cow", 0.7), ("cow", 0.9), ("dog", 0.95)]


def test_a_calf_inside_its_mothers_box_stays_when_one_pass_found_both():
    whole = det([[10, 10, 200, 150], [40, 60, 90, 140]], [0.95, 0.7])
    merged = merge(whole, [(det([[300, 10, 320, 30]], [0.4]), np.zeros(1, bool))])
    assert sorted(merged.score.tolist()) == pytest.approx([0.4, 0.7, 0.95])


def test_a_cow_wider_than_the_overlap_on_a_seam_is_stitched_from_both_tiles():
    empty = Detections.empty(NAMES, scored=True)
    left = det([[100, 50, 160, 90]], [0.6])    # cut by the left tile's right edge at 160
    right = det([[130, 52, 200, 91]], [0.7])   # cut by the right tile's left edge at 130
    merged = merge(empty, [(left, np.ones(1, bool)), (right, np.ones(1, bool))])
    assert merged.xyxy.tolist() == [[100, 50, 200, 91]] and merged.score.tolist() == pytest.approx([0.7])
    whole = det([[98, 49, 201, 92]], [0.9])  # the whole image saw it: the cut halves add nothing
    assert len(merge(whole, [(left, np.ones(1, bool)), (right, np.ones(1, bool))])) == 1


def test_merge_is_fast_and_capped_with_many_boxes():
    import time
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1800, (3700, 2)).astype(np.float32)
    many = det(np.concatenate([xy, xy + rng.uniform(5, 60, (3700, 2))], 1), rng.uniform(0.05, 1, 3700).tolist())
    start = time.perf_counter()
    merged = merge(many[:100], [(many[100:], np.zeros(3600, bool))], limit=100)
    assert len(merged) == 100 and time.perf_counter() - start < 5.0  # the first version took 57 s


def test_tile_boxes_return_to_image_pixels_and_cut_boxes_are_dropped():
    rgb = np.zeros((200, 400, 3), np.uint8)
    calls = []

    def detect(images):
        calls.append([im.shape[:2] for im in images])
        out = [Detections.empty(NAMES, scored=True)]  # the whole image finds nothing
        for im in images[1:]:
            h, w = im.shape[:2]
            # a whole cow in the middle of every tile, and one cut by the tile's right edge
            out.append(det([[w / 2 - 5, h / 2 - 5, w / 2 + 5, h / 2 + 5], [w - 8, 10, w, 20]], [0.8, 0.9]))
        return out

    found = detect_tiled(detect, rgb, (1, 2))
    assert len(calls) == 1 and len(calls[0]) == 3  # one batched call: the whole image and two tiles
    (x0, y0, x1, y1), (x2, _, x3, _) = tile_windows(400, 200, 1, 2)
    centres = sorted(((found.xyxy[:, 0] + found.xyxy[:, 2]) / 2).round().tolist())
    # each tile's middle cow, in image pixels; the left tile's edge box is cut by the seam and nothing
    # else saw it whole (kept, it is all there is); the right tile's edge box lies on the image border
    assert sorted(centres) == sorted([round((x0 + x1) / 2), round((x2 + x3) / 2), round(x1 - 4), 400 - 4])


def test_predict_with_tiles_on_a_real_detector(tiny):
    rgb = np.random.default_rng(0).integers(0, 255, (256, 384, 3), np.uint8)
    tiled = tiny.predict(rgb, tiles="2x2")
    by_hand = detect_tiled(lambda images: tiny.detect_arrays(images), rgb, (2, 2))
    assert len(tiled) >= 1 and np.array_equal(tiled.xyxy, by_hand.xyxy) and np.array_equal(tiled.score, by_hand.score)
    assert (tiled.xyxy[:, 2] <= 384 + 1e-3).all() and (tiled.xyxy[:, 3] <= 256 + 1e-3).all()
    assert tiny.predict(rgb, tiles="auto") is not None
    with pytest.raises(ValueError, match="tiles: expected"):
        tiny.predict(rgb, tiles="0x3")
    with pytest.raises(ValueError, match="at least 32 px"):
        tiny.predict(np.zeros((1, 1, 3), np.uint8), tiles="2x2")


def test_cli_tiles_bad_input_is_one_line(tmp_path, capsys):
    from PIL import Image
    from cowdetect.cli import main
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    data = str(tmp_path / "data")
    for args, message in ((["predict", str(tmp_path / "dot.png"), "--tiles", "0x3"], "1 to 16 rows"),
                          (["predict", str(tmp_path / "dot.png"), "--tiles", "2x2"], "at least 32 px"),
                          (["evaluate", "--tiles", "many"], "expected auto"),
                          (["track", "demo", "--out", str(tmp_path / "o.mp4"), "--tiles", "9x99"], "1 to 16 rows")):
        assert main([*args, "--data-dir", data]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: tiles: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "data" / "models").exists()  # refused before any model was loaded


def test_tracking_keeps_a_detection_cache_per_tiling(video_store):
    from cowdetect import jobs
    video = video_store.videos()[0]
    runs = {}
    for tiles in ("off", "2x2", "off"):
        settings = jobs.tracking_settings(video_store, video.id, model="tiny", score_threshold=0.05, tiles=tiles,
                                          detect_every=5)
        runs.setdefault(tiles, []).append(jobs.run_tracking(video_store, jobs.create_tracking_run(
            video_store, settings), log=lambda m: None).metrics["summary"])
    assert runs["2x2"][0]["reused_frames"] == 0  # tiled detections are not the untiled ones
    assert runs["off"][1]["reused_frames"] == runs["off"][1]["detected_frames"] == 4  # the untiled cache still serves
    assert len(list((video_store.data_dir / "cache" / "detections").glob("*.f32"))) == 2


def test_evaluations_with_and_without_tiles_are_cached_apart(demo_store):
    from conftest import add_tiny_model
    from cowdetect import jobs
    from cowdetect.store import Store
    import shutil
    import tempfile
    store = Store(shutil.copytree(demo_store.data_dir, tempfile.mkdtemp() + "/data"))
    add_tiny_model(store)
    plain = jobs.evaluation_settings(store, "tiny", "test")
    tiled = jobs.evaluation_settings(store, "tiny", "test", tiles="auto")
    assert tiled["model_label"] == "tiny (#1) · tiles auto" and tiled["tiles"] == "auto"
    jobs.run_job(store, jobs.create_evaluation_run(store, plain), log=lambda m: None)
    assert jobs.cached_evaluation(store, plain) is not None and jobs.cached_evaluation(store, tiled) is None
