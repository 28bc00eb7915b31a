"""Typed rows: what the store hands out. Paths are absolute and inside the data folder."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RUN_STATUSES = ("queued", "running", "done", "stopped", "failed", "interrupted")
# A run in one of these states holds (or waits for) a worker process.
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class ImageRecord:
    """One stored image; ``path`` is absolute, inside the data folder."""

    id: int
    sha256: str
    path: Path
    original_name: str | None
    width: int
    height: int
    split: str
    labeled: bool
    # where a frame imported from a stored video came from (None for other images)
    video_id: int | None = None
    frame_index: int | None = None
    frame_time: float | None = None   # seconds, the frame's own timestamp
    phash: str | None = None          # perceptual hash (cowdetect.images.perceptual_hash), 16 hex digits

    @property
    def source_text(self) -> str | None:
        """'video 3, frame 120 at 4.80 s' for a video frame, else None."""
        if self.video_id is None:
            return None
        return f"video {self.video_id}, frame {self.frame_index} at {self.frame_time or 0:.2f} s"


@dataclass(frozen=True)
class SuggestionSet:
    """A model's (or a tracker's) boxes for one image, kept apart from its ground truth.

    ``boxes`` is a :class:`cowdetect.detections.Detections` (xyxy px of the original image,
    scores) in the store's vocabulary; ``source`` names what made them ('cow-ft (#3)',
    'coco:ssdlite…', 'tracker, run 12').
    """

    image_id: int
    source: str
    model_id: int | None
    run_id: int | None
    score_threshold: float | None
    uncertainty: float | None
    created_at: str
    boxes: Any


@dataclass(frozen=True)
class ModelRecord:
    """One stored model version; ``checkpoint`` is absolute, inside the data folder."""

    id: int
    name: str
    architecture: str
    classes: tuple[str, ...]
    checkpoint: Path
    parent_id: int | None
    params: dict[str, Any]
    created_at: str
    active: bool = False

    @property
    def label(self) -> str:
        """How the pages, the CLI and stored results name this version: 'NAME (#ID)'."""
        return f"{self.name} (#{self.id})"


@dataclass(frozen=True)
class RunRecord:
    """One job (train, track, evaluate): its settings, state, progress and results."""

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    iteration: int
    total: int
    error: str | None
    pid: int | None
    model_id: int | None
    created_at: str
    finished_at: str | None
    checkpoint: str | None  # relative to the data folder
    checkpoint_iteration: int
    stop_requested: bool
    started_at: str | None
    device: str | None
    metrics: dict[str, Any]
    user: str | None = None  # who started it (an account name, or local:LOGIN)

    @property
    def active(self) -> bool:
        """Queued or running (a worker holds it or will)."""
        return self.status in ACTIVE


@dataclass(frozen=True)
class VideoRecord:
    """One stored video; ``gt_path`` is its MOTChallenge ground truth, or None."""

    id: int
    sha256: str
    path: Path
    original_name: str | None
    width: int | None
    height: int | None
    fps: float | None
    frames: int | None
    gt_path: Path | None
    added_at: str
    # counting lines and zones drawn on it (cowdetect.counting.geometry_to_dict; {} when none)
    geometry: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultRecord:
    """One stored evaluation: ``metrics`` as :meth:`cowdetect.metrics.EvalResult.as_dict` gives them."""

    id: int
    model_id: int | None
    model_label: str
    split: str
    dataset_hash: str
    metrics: dict[str, Any]
    created_at: str
    tiles: str = "off"

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for JSON downloads)."""
        return {"id": self.id, "model_id": self.model_id, "model_label": self.model_label, "split": self.split,
                "dataset_hash": self.dataset_hash, "tiles": self.tiles, "metrics": self.metrics,
                "created_at": self.created_at}


def run_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(row["id"], row["kind"], json.loads(row["params"]), row["status"], row["iteration"],
                     row["total"], row["error"], row["pid"], row["model_id"], row["created_at"], row["finished_at"],
                     row["checkpoint"], row["checkpoint_iteration"], bool(row["stop_requested"]), row["started_at"],
                     row["device"], json.loads(row["metrics"]), row["user"])


def result_row(row: sqlite3.Row) -> ResultRecord:
    return ResultRecord(row["id"], row["model_id"], row["model_label"], row["split"], row["dataset_hash"],
                        json.loads(row["metrics"]), row["created_at"], row["tiles"])


def model_row(row: sqlite3.Row, inside: Callable[[str], Path]) -> ModelRecord:
    return ModelRecord(row["id"], row["name"], row["architecture"], tuple(json.loads(row["classes"])),
                       inside(row["checkpoint"]), row["parent_id"], json.loads(row["params"]), row["created_at"],
                       bool(row["active"]))


def image_row(row: sqlite3.Row, inside: Callable[[str], Path]) -> ImageRecord:
    return ImageRecord(row["id"], row["sha256"], inside(row["file"]), row["original_name"], row["width"],
                       row["height"], row["split"], bool(row["labeled"]), row["video_id"], row["frame_index"],
                       row["frame_time"], row["phash"])


def video_row(row: sqlite3.Row, inside: Callable[[str], Path]) -> VideoRecord:
    return VideoRecord(row["id"], row["sha256"], inside(row["file"]), row["original_name"], row["width"],
                       row["height"], row["fps"], row["frames"], inside(row["gt_file"]) if row["gt_file"] else None,
                       row["added_at"], json.loads(row["geometry"]))
