"""cowdetect — find, fine-tune on and track cows in images and video.

    from cowdetect import DetectorBox, Store, make_demo, track_video

    store = Store("data")                               # SQLite + image files under ./data
    make_demo(store, n_train=8, n_val=0, n_test=4, size=(320, 240), video_seconds=1.0)
    box = DetectorBox.pretrained()                      # COCO detector; box.origin says which and why
    image = store.dataset("test")[0].image              # a path; PIL images and RGB arrays work too
    print(box.predict(image).to_detectron2())           # pred_classes, class_names, pred_boxes, scores
    history = box.train(store.dataset("train"), iterations=3)   # cow + background, from COCO's cow
    print(box.evaluate(store.dataset("test")).map_50)   # COCO mAP at IoU 0.5
    box.save("data/models/tutorial.pt")                 # DetectorBox.load() needs nothing else
    video = store.videos()[0]["path"]                   # the demo video: cows walking, 25 fps
    result = track_video(video, box, "tracked.mp4", "tracks.txt")   # Norfair ids, H.264 that browsers play
    print(result.num_tracks, f"{result.fps:.0f} fps")   # tracks.txt is MOTChallenge text

Boxes are always xyxy in image pixels; images are RGB.
"""

from .config import DetectorConfig, TrackConfig, TrainConfig
from .data import LabeledDataset, Sample
from .demo import make_demo
from .detections import Detections
from .detector import DetectorBox
from .engine import TrainingDivergedError
from .images import load_image
from .metrics import EvalResult, evaluate_detections
from .models import ARCHITECTURES
from .store import Store
from .weights import WeightsUnavailableError

__all__ = [
    "ARCHITECTURES", "DetectorBox", "DetectorConfig", "Detections", "EvalResult", "LabeledDataset",
    "Sample", "Store", "TrackConfig", "TrainConfig", "TrainingDivergedError", "WeightsUnavailableError",
    "evaluate_detections", "load_image", "make_demo", "track_video",
]


def __getattr__(name: str) -> object:
    # Norfair (and matplotlib, through filterpy) load only when tracking is used: +0.6 s otherwise
    # on every `python -m cowdetect` command.
    if name == "track_video":
        from .tracking import track_video
        return track_video
    raise AttributeError(f"module 'cowdetect' has no attribute {name!r}")
