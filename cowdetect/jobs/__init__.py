"""Background jobs: a training, tracking or evaluation run is a row in the store, run by one
function in its own process.

:mod:`.machinery` holds what every kind shares (rows, worker processes, the device queue,
stop / resume, dispatch); each kind is a module of named steps: :mod:`.train`, :mod:`.track`,
:mod:`.evaluate`. The CLI runs the very same job functions in the foreground.
"""

import importlib

from .machinery import (ACTIVE, create_run, install_sigterm_handler, mark_interrupted, pid_alive, prepare_resume,
                        request_stop, run_job, runs_table, start_worker)

# The job kinds load on first use: they import torch, which `python -m cowdetect runs` does not need.
_KINDS = {
    "train": ("MIN_TRAIN_IMAGES", "cowsay_text", "create_training_run", "moo", "progress", "run_training",
              "seconds_per_iteration", "training_settings"),
    "track": ("add_video", "create_tracking_run", "detection_cache", "run_tracking", "track_outputs",
              "tracking_settings"),
    "evaluate": ("cached_evaluation", "create_evaluation_run", "evaluation_settings", "run_evaluation"),
}
_WHERE = {name: kind for kind, names in _KINDS.items() for name in names}
__all__ = sorted(["ACTIVE", "create_run", "install_sigterm_handler", "mark_interrupted", "pid_alive",
                  "prepare_resume", "request_stop", "run_job", "runs_table", "start_worker", *_WHERE])


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'cowdetect.jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
