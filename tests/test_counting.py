"""Counting lines and zones (cowdetect.counting) on hand-made tracks: direction, hysteresis, a
line's ends, zone occupancy and dwell, events CSV, drawing, bad input; the store keeps a video's
lines and zones."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from cowdetect.accounts import PermissionDenied, User
from cowdetect.counting import (Counter, Line, Zone, check_geometry, geometry_from_dict, geometry_to_dict, named,
                                parse_line, parse_zone)
from cowdetect.tracking import Tracks
from cowdetect.video import Frame

W, H = 40.0, 30.0  # every hand-made box: 40 x 30 px, diagonal 50 px, so the band is 5 px at hysteresis 0.1


def feed(counter: Counter, path: list[dict[int, tuple[float, float]]], fps: float = 10.0,
         times: list[float] | None = None) -> Counter:
    """Feed frames of {track id: anchor (bottom centre x, y)} to ``counter``."""
    for index, anchors in enumerate(path):
        ids = np.array(list(anchors), np.int64)
        xyxy = np.array([[x - W / 2, y - H, x + W / 2, y] for x, y in anchors.values()], np.float32).reshape(-1, 4)
        time_s = times[index] if times is not None else index / fps
        counter.update(Frame(index, time_s, np.zeros((1, 1, 3), np.uint8)),
                       Tracks(ids, xyxy, np.ones(len(ids), np.float32), np.ones(len(ids), bool)))
    return counter


def walk(xs, y: float = 100.0, track_id: int = 1) -> list[dict[int, tuple[float, float]]]:
    return [{track_id: (float(x), y)} for x in xs]


GATE = Line("gate", 100, 0, 100, 200)  # drawn top to bottom: its right-hand side is the picture's left


def test_direction_follows_the_way_the_line_was_drawn():
    right = walk(range(50, 160, 10))  # walks left to right across x = 100
    (line,) = feed(Counter([GATE]), right).summary()["lines"]
    assert (line["forward"], line["backward"]) == (0, 1)
    assert line["crossings"] == [{"track_id": 1, "direction": "backward", "frame": 7, "time_s": 0.6}]  # x=110 at frame 7
    reversed_gate = Line("gate", 100, 200, 100, 0)  # drawn bottom to top: forward is now left to right
    (line,) = feed(Counter([reversed_gate]), right).summary()["lines"]
    assert (line["forward"], line["backward"]) == (1, 0)
    # a line drawn left to right: walking down the picture (image y grows downwards) is forward
    down = [{1: (100.0, float(y))} for y in range(20, 200, 10)]
    (line,) = feed(Counter([Line("road", 0, 100, 200, 100)]), down).summary()["lines"]
    assert (line["forward"], line["backward"]) == (1, 0)


def test_jitter_on_the_line_counts_once():
    jitter = [50, 70, 90] + [97, 103] * 10 + [104, 96, 120, 140]  # 20 frames on the line (±3 px), then on
    (line,) = feed(Counter([GATE]), walk(jitter)).summary()["lines"]
    assert line["backward"] == 1 and line["forward"] == 0
    (line,) = feed(Counter([GATE], hysteresis=0.0), walk(jitter)).summary()["lines"]
    assert line["forward"] + line["backward"] == 21  # without the band every wobble counts


def test_turning_back_inside_the_band_counts_nothing_and_crossing_back_counts_both_ways():
    back = walk([60, 80, 98, 102, 104, 98, 80, 60])  # steps 4 px over (the band is 5 px) and turns back
    assert feed(Counter([GATE]), back).summary()["lines"][0]["crossings"] == []
    there_and_back = walk([60, 80, 120, 140, 120, 80, 60])
    (line,) = feed(Counter([GATE]), there_and_back).summary()["lines"]
    assert [c["direction"] for c in line["crossings"]] == ["backward", "forward"]


def test_a_track_first_seen_on_the_line_takes_its_side_without_counting():
    (line,) = feed(Counter([GATE]), walk([100, 101, 103, 110, 130])).summary()["lines"]
    assert line["crossings"] == []


def test_only_the_segment_between_the_ends_counts():
    short = Line("short", 100, 0, 100, 50)  # the cow walks at y = 100, below the line's lower end
    assert feed(Counter([short]), walk(range(50, 160, 10))).summary()["lines"][0]["crossings"] == []
    # a diagonal walk that meets the line between its ends (at y = 34) counts, though it is past the
    # lower end (y = 50) by the time it is beyond the band; one that meets it at y = 54 does not
    diagonal = [{1: (60.0 + 10 * i, 10.0 + 6 * i)} for i in range(10)]
    assert len(feed(Counter([short]), diagonal).summary()["lines"][0]["crossings"]) == 1
    below = [{1: (60.0 + 10 * i, 30.0 + 6 * i)} for i in range(10)]
    assert feed(Counter([short]), below).summary()["lines"][0]["crossings"] == []


def test_two_tracks_and_variable_frame_times():
    frames = [{1: (60.0 + 10 * i, 100.0), 2: (150.0 - 10 * i, 150.0)} for i in range(10)]
    times = [0.0, 0.1, 0.15, 0.4, 0.5, 0.55, 0.9, 1.0, 1.2, 1.3]
    (line,) = feed(Counter([GATE]), frames, times=times).summary()["lines"]
    assert line["crossings"] == [{"track_id": 1, "direction": "backward", "frame": 6, "time_s": 0.55},
                                 {"track_id": 2, "direction": "forward", "frame": 7, "time_s": 0.9}]
    assert (line["forward"], line["backward"]) == (1, 1)


PEN = Zone("pen", ((100, 50), (200, 50), (200, 150), (100, 150)))


def test_zone_inside_per_frame_dwell_and_events():
    # cow 1 enters at frame 3 (x = 120), stays until frame 8 (x = 180 ... walks out at 220);
    # cow 2 stands inside from the first frame and vanishes (no longer tracked) after frame 5
    path = []
    for i in range(12):
        frame = {1: (60.0 + 20 * i, 100.0)}
        if i < 5:
            frame[2] = (150.0, 120.0)
        path.append(frame)
    counter = feed(Counter([], [PEN]), path, fps=10.0)
    (zone,) = counter.summary()["zones"]
    assert zone["max_inside"] == 2 and zone["inside"] == 0
    inside_1 = [i for i in range(12) if 105 <= 60 + 20 * i < 205]  # band 5 px: in from x = 105, out from x = 205
    assert zone["dwell"] == [{"track_id": 1, "seconds": round(len(inside_1) / 10, 3)},
                             {"track_id": 2, "seconds": 0.5}]
    rows = list(csv.DictReader(io.StringIO(counter.csv_text())))
    assert [(r["event"], r["track_id"], r["frame"]) for r in rows] == [
        ("enter", "2", "1"), ("enter", "1", str(inside_1[0] + 1)), ("exit", "2", "6"),
        ("exit", "1", str(inside_1[-1] + 2))]
    assert list(rows[0]) == ["kind", "name", "event", "track_id", "frame", "time_s"]


def test_zone_hysteresis_keeps_a_cow_on_the_edge_inside():
    edge = [{1: (float(x), 100.0)} for x in [150, 170, 190, 198, 202, 197, 203, 199, 201, 198]]
    counter = feed(Counter([], [PEN]), edge)
    assert [e.event for e in counter.events()] == ["enter"]  # never more than 5 px out: stays in
    assert feed(Counter([], [PEN], hysteresis=0.0), edge).summary()["zones"][0]["max_inside"] == 1
    assert len(feed(Counter([], [PEN], hysteresis=0.0), edge).events()) == 7  # flapping without the band


def test_summary_is_rolling_and_json_ready():
    counter = Counter([GATE], [PEN])
    feed(counter, walk([60, 80]))
    assert counter.summary()["lines"][0]["crossings"] == []
    feed(counter, walk([120, 140]))  # the same counter, later frames (a live stream)
    summary = counter.summary()
    assert summary["lines"][0]["backward"] == 1
    assert json.loads(json.dumps(summary)) == summary
    assert set(summary) == {"lines", "zones"} and summary["lines"][0]["points"] == [[100, 0], [100, 200]]


def test_draw_shows_lines_with_a_forward_arrow_zones_and_counts():
    counter = feed(Counter([Line("road", 20, 100, 380, 100)], [PEN]), walk([150, 150], y=80))
    rgb = np.zeros((200, 400, 3), np.uint8)
    counter.draw(rgb, 1.0)
    magenta = np.all(rgb == (255, 64, 160), axis=2)
    assert magenta[100, 50:350].all()  # the line
    assert magenta[108:118, 200].any() and not magenta[82:92, 200].any()  # the arrow: towards +y, its right side
    assert np.all(rgb == (0, 200, 255), axis=2)[50:150, 100].any()  # the zone's edge
    half = np.zeros((100, 200, 3), np.uint8)
    counter.draw(half, 0.5)  # on a frame drawn at half size, at half the coordinates
    assert np.all(half == (255, 64, 160), axis=2)[50, 25:175].all()


BAD = [
    (parse_line, "1,2,3", "expected 4 numbers x1,y1,x2,y2, got 3"),
    (parse_line, "gate=10,20,10,20", "line 'gate': both ends are the same point (10, 20)"),
    (parse_line, "1,2,x,4", "expected comma-separated numbers, got 'x'"),
    (parse_line, "1,nan,3,4", "expected comma-separated numbers, got 'nan'"),
    (parse_line, "a b!=1,2,3,4", "expected a name of up to 40 letters"),
    (parse_zone, "0,0,10,0,10", "expected x,y pairs, got 5 numbers"),
    (parse_zone, "0,0,10,10", "expected at least 3 corners (x,y pairs), got 2"),
    (parse_zone, "pen=0,0,10,10,10,0,0,10", "zone 'pen': its edges cross (edge 1 and edge 3)"),
    (parse_zone, "0,0,5,5,10,10", "its corners enclose no area"),
    (parse_zone, "0,0,inf,0,5,5", "expected comma-separated numbers, got 'inf'"),
]


@pytest.mark.parametrize("parse, text, message", BAD)
def test_bad_lines_and_zones_are_refused_in_one_line(parse, text, message):
    with pytest.raises(ValueError, match=None) as caught:
        parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_check_geometry_against_the_frame_and_names():
    lines, zones = named([parse_line("0,0,640,360"), parse_line("gate=10,10,10,300")], [parse_zone("0,0,9,0,9,9")])
    assert [line.name for line in lines] == ["line1", "gate"] and zones[0].name == "zone1"
    check_geometry(lines, zones, 640, 360)  # edges of the frame included
    with pytest.raises(ValueError, match=r"line 'line1': point \(640, 360\) is outside the 320x240 frame"):
        check_geometry(lines, zones, 320, 240)
    with pytest.raises(ValueError, match="'gate': the name is used twice"):
        check_geometry(lines, [Zone("gate", zones[0].points)], 640, 360)
    check_geometry(lines, zones, None, None)  # frame size unknown: any point at or past 0 is accepted
    with pytest.raises(ValueError, match=r"^line 'a': point \(-1, 5\) is outside the frame \(coordinates start at 0\)$"):
        check_geometry([Line("a", -1, 5, 10, 10)], [], None, None)


def test_geometry_dict_round_trip_and_strict_types():
    lines, zones = (GATE,), (PEN,)
    d = geometry_to_dict(lines, zones)
    assert geometry_from_dict(json.loads(json.dumps(d))) == (lines, zones)
    assert geometry_from_dict({}) == ((), ())
    for bad, message in [([], "expected {'lines'"), ({"lines": [], "extra": 1}, "expected {'lines'"),
                         ({"lines": [{"name": "a", "points": [[0, 0], [True, 1]]}]}, "finite numbers"),
                         ({"lines": [{"name": "a", "points": [[0, 0], [1, "2"]]}]}, "finite numbers"),
                         ({"lines": [{"name": "a", "points": [[0, 0], [1, 1], [2, 2]]}]}, "expected 2 points"),
                         ({"zones": [{"name": "z", "points": [[0, 0], [1, 1]]}]}, "at least 3 corners"),
                         ({"zones": [{"points": [[0, 0], [1, 1], [0, 1]]}]}, "expected {'name'")]:
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("[", r"\[")):
            geometry_from_dict(bad)


def test_store_keeps_a_videos_lines_and_zones(video_store):
    video = video_store.videos()[0]  # 160 x 96
    assert video.geometry == {}
    geometry = geometry_to_dict([Line("gate", 80, 0, 80, 96)], [Zone("pen", ((0, 0), (50, 0), (50, 50)))])
    assert video_store.set_video_geometry(video.id, geometry).geometry == geometry
    assert video_store.video(video.id).geometry == geometry
    assert video_store.activity(1)[0]["action"] == "set counting lines"
    outside = geometry_to_dict([Line("gate", 80, 0, 80, 200)], [])
    with pytest.raises(ValueError, match=r"outside the 160x96 frame"):
        video_store.set_video_geometry(video.id, outside)
    viewer = video_store.as_user(User("local:viewer", "viewer"))
    with pytest.raises(PermissionDenied):
        viewer.set_video_geometry(video.id, {})
    assert video_store.video(video.id).geometry == geometry  # refusals changed nothing
    assert video_store.set_video_geometry(video.id, {}).geometry == {}


def test_huge_or_misnamed_geometry_is_refused_fast(video_store):
    """Hostile test: a 10⁴-corner zone (the O(n²) edge check took minutes), 10⁶ lines, and names that
    check_geometry refuses reaching the store through a video of unknown size or a live request."""
    import time

    angles = np.linspace(0, 6.28, 10_000, endpoint=False)
    ring = [[float(500 + 400 * np.cos(a)), float(500 + 400 * np.sin(a))] for a in angles]
    started = time.monotonic()
    with pytest.raises(ValueError, match="expected at most 200 corners"):
        geometry_from_dict({"zones": [{"name": "z", "points": ring}]})
    with pytest.raises(ValueError, match="expected at most 100 lines and zones together, got 1000000"):
        geometry_from_dict({"lines": [{"name": "a", "points": [[0, 0], [1, 1]]}] * 1_000_000})
    with pytest.raises(ValueError, match="expected at most 200 corners"):
        parse_zone(",".join(f"{x:.1f},{y:.1f}" for x, y in ring))
    assert time.monotonic() - started < 2.0
    video = video_store.videos()[0]
    for name in ["a\nb", "", "x" * 41]:
        with pytest.raises(ValueError, match="name"):
            video_store.set_video_geometry(video.id, {"lines": [{"name": name, "points": [[0, 0], [1, 1]]}]})
    twice = geometry_to_dict([Line("a", 0, 0, 1, 1)], [Zone("a", ((0, 0), (5, 0), (5, 5)))])
    with pytest.raises(ValueError, match="used twice"):
        video_store.set_video_geometry(video.id, twice)
    assert video_store.video(video.id).geometry == {}


def test_a_crossing_is_stamped_at_the_first_frame_past_the_line_and_restamped_after_going_back():
    """A big band (hysteresis 0.4: 20 px) and a slow cow (2 px a frame): it is past x = 100 at x = 102
    (frame 12) but leaves the band only at x = 120 (frame 21); the crossing is at frame 12."""
    (line,) = feed(Counter([GATE], hysteresis=0.4), walk(range(80, 131, 2))).summary()["lines"]
    assert line["crossings"] == [{"track_id": 1, "direction": "backward", "frame": 12, "time_s": 1.1}]
    # past at frame 4, back on its side at frame 5, past again at frame 6, out of the band at frame 8
    (line,) = feed(Counter([GATE], hysteresis=0.4), walk([70, 90, 96, 102, 98, 101, 110, 125])).summary()["lines"]
    assert [(c["frame"], c["time_s"]) for c in line["crossings"]] == [(6, 0.5)]


def test_dwell_does_not_credit_a_stream_outage():
    """10 frames inside at 10 fps, a 60 s outage (a reconnect), 10 frames more: the outage's frame is
    credited at most 1 s (MAX_FRAME_S), not 60 s; a 1 fps stream still gets each full second."""
    pen = Zone("pen", ((0, 0), (200, 0), (200, 200), (0, 200)))
    times = [i / 10 for i in range(10)] + [60.9 + i / 10 for i in range(10)]
    (zone,) = feed(Counter(zones=[pen]), [{1: (100.0, 100.0)}] * 20, times=times).summary()["zones"]
    assert zone["dwell"] == [{"track_id": 1, "seconds": pytest.approx(0.9 + 1.0 + 0.9 + 0.1)}]
    (zone,) = feed(Counter(zones=[pen]), [{1: (100.0, 100.0)}] * 10, times=list(range(10))).summary()["zones"]
    assert zone["dwell"] == [{"track_id": 1, "seconds": 10.0}]


def test_totals_run_while_kept_events_are_bounded_and_the_csv_is_appended(tmp_path):
    back_and_forth = walk([50, 150] * 5 + [50])  # 10 crossings, 5 each way
    full = feed(Counter([GATE]), back_and_forth)
    bounded = feed(Counter([GATE], keep=3, csv_path=tmp_path / "counts.csv"), back_and_forth)
    (line,), (all_,) = bounded.summary()["lines"], full.summary()["lines"]
    assert (line["forward"], line["backward"]) == (all_["forward"], all_["backward"]) == (5, 5)
    assert line["crossings"] == all_["crossings"][-3:] and len(bounded.events()) == 3
    assert (tmp_path / "counts.csv").read_text() == full.csv_text()  # every event, appended as it happened
    with pytest.raises(ValueError, match="keep: expected None or at least 1 event, got 0"):
        Counter([GATE], keep=0)


def test_adding_shapes_from_two_stale_pages_keeps_both(video_store):
    """Two tabs drew the page with the same (now stale) video record and each adds a line: the page's
    callback adds to the geometry as stored now, so both are kept (before, the second overwrote the first)."""
    import streamlit as st

    from ui.counting import _add, _remove

    video = video_store.videos()[0]
    stale_a, stale_b = video_store.video(video.id), video_store.video(video.id)
    st.session_state["counting_name"] = ""
    _add(video_store, stale_a, ("line", [(10.0, 10.0), (10.0, 90.0)]))
    _add(video_store, stale_b, ("line", [(50.0, 10.0), (50.0, 90.0)]))
    _add(video_store, stale_b, ("zone", [(0.0, 0.0), (40.0, 0.0), (40.0, 40.0)]))
    lines, zones = geometry_from_dict(video_store.video(video.id).geometry)
    assert [(x.name, x.x1) for x in lines] == [("line1", 10.0), ("line2", 50.0)] and [z.name for z in zones] == ["zone1"]
    _remove(video_store, stale_a, "line1")
    _add(video_store, stale_a, ("line", [(70.0, 10.0), (70.0, 90.0)]))  # the first free name again
    lines, _ = geometry_from_dict(video_store.video(video.id).geometry)
    assert [(x.name, x.x1) for x in lines] == [("line2", 50.0), ("line1", 70.0)]
    st.session_state["counting_name"] = "line2"  # a name in use: refused, nothing changed
    before = video_store.video(video.id).geometry
    _add(video_store, stale_a, ("line", [(80.0, 10.0), (80.0, 90.0)]))
    assert st.session_state["counting_flash"] == ("error", "Not added: line 'line2': the name is used twice; every "
                                                            "line and zone needs its own")
    assert video_store.video(video.id).geometry == before
