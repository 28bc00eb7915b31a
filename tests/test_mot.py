"""MOTChallenge files, track tables and MOTA / IDF1 (motmetrics) on hand-made tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cowdetect.mot import counts_per_frame, mot_line, mot_scores, read_mot, track_table


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(lines))
    return path


def _two_cows(frames=10, swap_at=None):
    """Cow 1 walks right along y=10, cow 2 along y=60; with swap_at the tracker swaps their ids."""
    lines = []
    for f in range(frames):
        for cow, y in ((1, 10.0), (2, 60.0)):
            track_id = cow if swap_at is None or f < swap_at else 3 - cow
            lines.append(mot_line(f, track_id, np.array([5 * f, y, 5 * f + 40, y + 30]), 0.9))
    return lines


def test_perfect_tracks_score_one(tmp_path):
    gt = read_mot(_write(tmp_path, "gt.txt", _two_cows()))
    scores = mot_scores(gt, gt)
    assert scores["mota"] == 1.0 and scores["idf1"] == 1.0 and scores["id_switches"] == 0
    assert scores["num_unique_objects"] == 2 and scores["num_tracks"] == 2


def test_an_id_swap_is_counted(tmp_path):
    gt = read_mot(_write(tmp_path, "gt.txt", _two_cows()))
    hyp = read_mot(_write(tmp_path, "hyp.txt", _two_cows(swap_at=5)))
    scores = mot_scores(gt, hyp)
    assert scores["id_switches"] == 2 and scores["idf1"] == pytest.approx(0.5)
    assert scores["mota"] == pytest.approx(1 - 2 / 20)


def test_frames_past_a_cut_off_video_are_not_misses(tmp_path):
    gt = read_mot(_write(tmp_path, "gt.txt", _two_cows(10)))
    hyp = read_mot(_write(tmp_path, "hyp.txt", _two_cows(6)))
    assert mot_scores(gt, hyp, num_frames=6)["mota"] == 1.0
    assert mot_scores(gt, hyp)["mota"] == pytest.approx(1 - 8 / 20)


def test_track_table_and_counts(tmp_path):
    tracks = read_mot(_write(tmp_path, "t.txt", _two_cows(10)[:14]))  # cow 2 leaves after frame 7
    table = track_table(tracks, fps=5)
    assert table.to_dict("records")[0] == {"id": 1, "first_frame": 1, "last_frame": 7, "frames": 7,
                                           "duration_s": 1.4, "mean_score": 0.9}
    counts = counts_per_frame(tracks, 10)
    assert counts["cows"].tolist() == [2] * 7 + [0] * 3 and counts["frame"].tolist() == list(range(1, 11))
    assert track_table(read_mot(_write(tmp_path, "e.txt", [])), 25).empty


@pytest.mark.parametrize("text, message", [
    ("frame,id\nnot,numbers\n", "expected comma-separated numbers"),
    ("1,2,3\n", "expected comma-separated numbers"),
])
def test_bad_mot_files(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_mot(_write(tmp_path, "bad.txt", [text]))


def test_no_ground_truth_boxes(tmp_path):
    empty = pd.DataFrame(columns=["frame", "id", "x", "y", "w", "h", "conf"])
    with pytest.raises(ValueError, match="no boxes"):
        mot_scores(empty, empty)
