"""The labeling canvas (streamlit-drawable-canvas, labeled_rect mode): display size and the
conversion between the editor's boxes (original image px) and the canvas's objects (canvas px
of the part of the image in view, a :class:`ui.zoom.Viewport`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .zoom import Viewport

SAVED_COLOR = "#ffd600"     # boxes as stored
SUGGESTED_COLOR = "#ff6d00"  # a model's suggestion, not yet saved
NEW_COLOR = "#00e5ff"        # drawn in this session


def canvas_size(width: int, height: int, max_width: int = 720, max_height: int = 600) -> tuple[int, int, float]:
    """Display size (w, h) for an image and the scale from image to canvas pixels. Small images
    are enlarged to the canvas width, large ones shrunk; the aspect ratio is kept."""
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


def boxes_to_objects(boxes: list[dict], view: Viewport) -> dict:
    """An initial drawing of the ``boxes`` ({label, xyxy (original px), suggested} dicts) that
    ``view`` shows, in its canvas px; a box partly in view is drawn whole (the canvas clips it)."""
    # The component's boxes_to_drawing, written out: importing the component needs a running app.
    return {"objects": [{"type": "LabeledRect", "label": box["label"], **view.to_canvas(box["xyxy"]),
                         "originX": "left", "originY": "top", "scaleX": 1, "scaleY": 1, "angle": 0,
                         "stroke": SUGGESTED_COLOR if box.get("suggested") else SAVED_COLOR, "strokeWidth": 3,
                         "fill": "rgba(0, 0, 0, 0)", "lockRotation": True, "strokeUniform": True}
                        for box in boxes if view.shows(box["xyxy"])]}


def canvas_boxes(result: object, view: Viewport) -> list[dict] | None:
    """The boxes on the canvas as {label, xyxy (original px, clipped to the image, not to the
    view), suggested}, or None before the canvas has reported. The background is the view at
    exactly the canvas's size, so the canvas px of ``result.boxes`` map through ``view``."""
    data = getattr(result, "json_data", None)
    if not data:
        return None
    rects = [o for o in data.get("objects", []) if o.get("type") == "LabeledRect"]
    out = []
    for obj, box in zip(rects, result.boxes):  # type: ignore[attr-defined]
        xyxy = view.to_image(box)
        if xyxy is not None:  # else a click without a drag, or a box dragged off the image
            out.append({"label": box["label"], "xyxy": xyxy, "suggested": obj.get("stroke") == SUGGESTED_COLOR})
    return out
