"""The labeling canvas (streamlit-drawable-canvas, labeled_rect mode): display size and the
conversion between the editor's boxes (image px) and the canvas's objects (canvas px)."""

from __future__ import annotations

SAVED_COLOR = "#ffd600"     # boxes as stored
SUGGESTED_COLOR = "#ff6d00"  # a model's suggestion, not yet saved
NEW_COLOR = "#00e5ff"        # drawn in this session


def canvas_size(width: int, height: int, max_width: int = 720, max_height: int = 600) -> tuple[int, int, float]:
    """Display size (w, h) for an image and the scale from image to canvas pixels. Small images
    are enlarged to the canvas width, large ones shrunk; the aspect ratio is kept."""
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


def boxes_to_objects(boxes: list[dict], scale: float) -> dict:
    """An initial drawing: ``boxes`` are {label, xyxy (image px), suggested} dicts."""
    from streamlit_drawable_canvas import boxes_to_drawing

    objects = []
    for box in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in box["xyxy"])
        color = SUGGESTED_COLOR if box.get("suggested") else SAVED_COLOR
        objects += boxes_to_drawing([{"label": box["label"], "left": x1, "top": y1, "width": x2 - x1,
                                      "height": y2 - y1}], stroke_color=color, stroke_width=3)["objects"]
    return {"objects": objects}


def canvas_boxes(result: object, scale: float, width: int, height: int) -> list[dict] | None:
    """Boxes on the canvas as {label, xyxy (original image px, clipped), suggested}, or None
    before the canvas has reported. Uses the component's ``boxes_in_image_space`` (its own
    background fit) when it has one."""
    data = getattr(result, "json_data", None)
    if not data:
        return None
    rects = [o for o in data.get("objects", []) if o.get("type") == "LabeledRect"]
    image_space = result.boxes_in_image_space  # type: ignore[attr-defined]
    if image_space is None:
        image_space = [{**b, "left": b["left"] / scale, "top": b["top"] / scale, "width": b["width"] / scale,
                        "height": b["height"] / scale} for b in result.boxes]  # type: ignore[attr-defined]
    out = []
    for obj, box in zip(rects, image_space):
        x1, y1 = max(0.0, box["left"]), max(0.0, box["top"])
        x2, y2 = min(float(width), box["left"] + box["width"]), min(float(height), box["top"] + box["height"])
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue  # a click without a drag, or a box dragged off the image
        out.append({"label": box["label"], "xyxy": [round(v, 2) for v in (x1, y1, x2, y2)],
                    "suggested": obj.get("stroke") == SUGGESTED_COLOR})
    return out
