import numpy as np
import pytest

from cowdetect.detections import BACKGROUND, Detections

NAMES = (BACKGROUND, "cow", "dog")


def test_valid_and_views():
    d = Detections([[0, 0, 10, 10], [5, 5, 20, 30]], [1, 2], [0.9, 0.4], NAMES)
    assert len(d) == 2 and d.names == ["cow", "dog"]
    assert len(d.above(0.5)) == 1 and d.above(0.5).names == ["cow"]
    assert len(d[np.array([False, True])]) == 1
    view = d.to_detectron2()
    assert view == {"pred_classes": [1, 2], "class_names": ["cow", "dog"],
                    "pred_boxes": [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]], "scores": [0.9, 0.4]}
    assert d.with_class_names((BACKGROUND, "cow")).names == ["cow"]


def test_empty():
    e = Detections.empty(NAMES)
    assert len(e) == 0 and e.xyxy.shape == (0, 4) and e.score is None
    assert Detections.empty(NAMES, scored=True).score.shape == (0,)


@pytest.mark.parametrize("kwargs, message", [
    ({"xyxy": [[10, 0, 5, 10]], "class_id": [1]}, "x_min <= x_max"),
    ({"xyxy": [[0, 10, 5, 3]], "class_id": [1]}, "y_min <= y_max"),
    ({"xyxy": [[0, 0, np.nan, 3]], "class_id": [1]}, "finite"),
    ({"xyxy": [[0, 0, 5, 5]], "class_id": [1, 1]}, "class_id: expected 1"),
    ({"xyxy": [[0, 0, 5, 5]], "class_id": [7]}, "class_id: expected values in 0..2"),
    ({"xyxy": [[0, 0, 5, 5]], "class_id": [1], "score": [0.1, 0.2]}, "score: expected 1"),
    ({"xyxy": "abc", "class_id": [1]}, "xyxy"),
])
def test_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Detections(class_names=NAMES, **kwargs)


def test_unknown_class_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"expected one of \['cow', 'dog'\], got \['horse'\]"):
        Detections.from_names([[0, 0, 1, 1]], ["horse"], NAMES)
