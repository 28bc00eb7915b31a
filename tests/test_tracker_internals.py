"""cowdetect.tracking._TwoPassTracker re-runs Norfair's own update steps through its private
internals (Tracker._update_objects_in_place, Tracker._obj_factory.create, TrackedObject's counters).
Those are not API: this fails loudly when norfair is not the pinned version or the names the
override uses are gone or take other arguments, instead of tracking going silently wrong."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

from conftest import ROOT
from cowdetect.config import TrackConfig
from cowdetect.tracking import CowTracker, _TwoPassTracker


def test_norfair_is_the_pinned_version():
    pins = re.findall(r"^norfair==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [version("norfair")] == ["2.3.0"], (pins, version("norfair"))


def test_the_norfair_internals_the_two_pass_tracker_overrides_are_there():
    source = inspect.getsource(_TwoPassTracker.update)
    tracker = CowTracker(TrackConfig()).tracker  # built as tracking builds it (ReID on by default)
    assert isinstance(tracker, _TwoPassTracker)
    params = inspect.signature(tracker._update_objects_in_place).parameters
    assert list(params) == ["distance_function", "distance_threshold", "objects", "candidates", "period"]
    create = inspect.signature(tracker._obj_factory.create).parameters
    used = set(re.findall(r"(\w+)=", source[source.index("_obj_factory.create("):]))
    assert used and used <= set(create), used - set(create)
    for name in re.findall(r"self\.(\w+)", source):  # every tracker attribute the override reads
        assert hasattr(tracker, name), name
    from norfair.tracker import TrackedObject
    for name in ("hit_counter_is_positive", "reid_hit_counter_is_positive", "is_initializing", "tracker_step", "id"):
        assert name in dir(TrackedObject) or name in inspect.getsource(TrackedObject.__init__), name
