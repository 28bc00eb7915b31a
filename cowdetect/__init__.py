"""cowdetect — find, fine-tune on and track cows in images and video.

    from cowdetect import DetectorBox, Store, make_demo

    store = Store("data")                          # SQLite + image files under ./data
    make_demo(store, n_train=20, n_val=0, n_test=10, size=(320, 240), video=False)
    box = DetectorBox(weights=None)                 # or weights="coco" (torchvision, cached)
    dets = box.predict(store.dataset("test")[0].image)   # Detections: xyxy pixels, RGB input
    print(dets.to_detectron2())                     # pred_classes, class_names, pred_boxes, scores
    history = box.train(store.dataset("train"), iterations=5)
    print(box.evaluate(store.dataset("test")).map_50)
    box.save("data/models/tutorial.pt")             # DetectorBox.load() needs nothing else

Boxes are always xyxy in image pixels; images are RGB.
"""

from .config import DetectorConfig, TrainConfig
from .data import LabeledDataset, Sample
from .detections import Detections
from .detector import DetectorBox
from .engine import TrainingDivergedError
from .images import load_image
from .metrics import EvalResult, evaluate_detections
from .models import ARCHITECTURES
from .weights import WeightsUnavailableError

__all__ = [
    "ARCHITECTURES", "DetectorBox", "DetectorConfig", "Detections", "EvalResult", "LabeledDataset",
    "Sample", "TrainConfig", "TrainingDivergedError", "WeightsUnavailableError", "evaluate_detections",
    "load_image",
]
