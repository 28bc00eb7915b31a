"""Background jobs: a training, tracking or evaluation run is a row in the store, run by one
function in its own process.

:mod:`.machinery` holds what every kind shares (rows, worker processes, the device queue,
stop / resume, dispatch); each kind is a module of named steps: :mod:`.train`, :mod:`.track`,
:mod:`.evaluate`, :mod:`.prelabel`, :mod:`.frames` (frames of a video into the dataset). After a
tracking run, :mod:`.tolabel` finds the frames where tracking broke. The CLI runs the very same
job functions in the foreground.
"""

from ..lazy import lazy_getattr
from .machinery import (ACTIVE, create_run, install_sigterm_handler, mark_interrupted, pid_alive, prepare_resume,
                        request_stop, run_job, runs_table, start_worker)

# The job kinds load on first use: they import torch, which `python -m cowdetect runs` does not need.
_KINDS = {
    "train": ("MIN_TRAIN_IMAGES", "cowsay_text", "create_training_run", "moo", "progress", "run_training",
              "seconds_per_iteration", "training_settings"),
    "track": ("add_video", "check_track_config", "check_video_file", "create_tracking_run", "detection_cache",
              "run_tracking", "track_outputs", "tracking_settings"),
    "evaluate": ("cached_evaluation", "create_evaluation_run", "evaluation_settings", "run_evaluation"),
    "prelabel": ("create_prelabel_run", "prelabel_settings", "run_prelabel", "uncertainty"),
    "frames": ("create_frames_run", "frame_import_of", "frames_settings", "run_frames"),
    "trackmany": ("create_track_many_run", "run_track_many", "track_many_children", "track_many_settings"),
    "live": ("create_live_run", "live_outputs", "live_segments", "live_settings", "run_live"),
    "tolabel": ("find_frames_to_label", "frames_to_label_of", "import_run_frames", "tracker_suggestions"),
}
_WHERE = {name: kind for kind, names in _KINDS.items() for name in names}
__all__ = sorted(["ACTIVE", "create_run", "install_sigterm_handler", "mark_interrupted", "pid_alive",
                  "prepare_resume", "request_stop", "run_job", "runs_table", "start_worker", *_WHERE])


__getattr__ = lazy_getattr(__name__, _WHERE, globals())
