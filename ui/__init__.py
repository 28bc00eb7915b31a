"""The only shared Streamlit code: the data folder and its cached store, the cached detectors,
shared widgets, and the label editor's state (:class:`LabelEditor`, a plain tested class).

Modules: :mod:`.auth` (who this session is: login, cookie, the account sidebar), :mod:`.models`
(model specs on the pages), :mod:`.editor` (the label editor, no Streamlit), :mod:`.canvas` (the
labeling canvas), :mod:`.images` (thumbnails), :mod:`.tables` (DataFrames of store rows, no
Streamlit), :mod:`.widgets` and :mod:`.runs` (shared widgets),
:mod:`.prelabel` (the Data page's pre-label section), :mod:`.zoom` (the label canvas's zoom and pan,
no Streamlit).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

from cowdetect.accounts import User
from cowdetect.cli import data_dir_default
from cowdetect.store import Store

from .auth import account_sidebar, login_form, signed_in
from .canvas import NEW_COLOR, SAVED_COLOR, SUGGESTED_COLOR, boxes_to_objects, canvas_boxes, canvas_size
from .counting import counting_results, geometry_editor
from .editor import NEWS, LabelEditor, box_iou
from .images import image_uri, labeled_thumbnail, thumbnail, thumbnail_uri
from .live import live_section
from .models import (active_model_note, detector_for, detectron2_id, effort_section, effort_table, export_section,
                     latest_result, model_choices, worst_first)
from .prelabel import prelabel_panel
from .trackmany import track_many_section
from .video_frames import frames_from_video
from .runs import (compare_tracks, follow_run, launch, loss_charts, progress_bar, resume_run, run_picker,
                   to_label_section, training_scores, track_results)
from .tables import (activity_table, backup_note, comparison_table, model_table, per_image_table, pr_curves,
                     results_table)
from .widgets import (coco_images, flash, import_report, model_picker, move_button, show_flash, thumbnail_grid,
                      tiles_picker)
from .zoom import MOVES, Viewport, overview, view_image

__all__ = [
    "account_sidebar", "active_model_note", "activity_table", "backup_note", "base_store", "box_iou",
    "boxes_to_objects", "canvas_boxes", "canvas_size", "coco_images", "compare_tracks", "comparison_table", "counting_results", "data_dir",
    "detector_for", "detectron2_id", "effort_section", "effort_table", "export_section", "flash", "follow_run", "frames_from_video", "geometry_editor",
    "image_uri", "import_report", "live_section", "labeled_thumbnail", "LabelEditor", "latest_result", "launch", "login_form",
    "loss_charts", "model_choices", "model_picker", "model_table", "move_button", "MOVES", "NEW_COLOR", "NEWS",
    "overview", "per_image_table", "pr_curves", "prelabel_panel", "progress_bar", "results_table", "resume_run",
    "run_picker", "SAVED_COLOR", "show_flash", "signed_in", "start_demo_generation", "store", "SUGGESTED_COLOR",
    "thumbnail", "thumbnail_grid", "thumbnail_uri", "tiles_picker", "to_label_section", "track_many_section", "track_results",
    "training_scores", "view_image", "Viewport", "worst_first",
]


def data_dir() -> str:
    """``streamlit run app.py -- --data-dir DIR`` wins, then $COWDETECT_DATA_DIR, then ./data."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=data_dir_default())
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.data_dir


@st.cache_resource
def get_store(path: str) -> Store:
    """One Store per data folder, shared by all sessions (it opens a connection per call). It acts
    as the local user: pages get :func:`store`, which acts as the session's user."""
    return Store(path)


def base_store() -> Store:
    """The data folder's shared store (accounts, logins); pages work through :func:`store`."""
    return get_store(str(Path(data_dir()).resolve()))


def store() -> Store:
    """The store of this app's data folder, acting as this session's user: every write it makes
    is checked against that user's role (PermissionDenied) and logged under their name. A page
    run without a logged-in user (only the router's login page should be) stops here."""
    base = base_store()
    user: User | None = signed_in(base)
    if user is None:
        st.info("Log in first.")
        st.stop()
    return base.as_user(user)  # cheap: a path and a schema check


def start_demo_generation(target: Store) -> None:
    """Generate the demo data in a separate process (the same code as `python -m cowdetect demo`),
    so the page never blocks and a closed browser does not stop it. Needs the import role."""
    target.require("import")
    with open(target.data_dir / "demo.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "cowdetect", "demo", "--data-dir", str(target.data_dir)],
                         stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[1], env=os.environ.copy(),
                         start_new_session=True)
