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
    video = store.videos()[0].path                      # the demo video: cows walking, 25 fps
    result = track_video(video, box, "tracked.mp4", "tracks.txt")   # Norfair ids, H.264 that browsers play
    print(result.num_tracks, f"{result.fps:.0f} fps")   # tracks.txt is MOTChallenge text

Boxes are always xyxy in image pixels; images are RGB.
"""

from .lazy import lazy_getattr

# Where each public name lives. They load on first use, so `python -m cowdetect import-images`
# and the other commands that need no model start without importing torch (~5 s on 2 cores).
_EXPORTS = {
    "ARCHITECTURES": "models", "DetectorBox": "detector", "DetectorConfig": "config", "Detections": "detections",
    "EvalResult": "metrics", "LabeledDataset": "data", "OnnxDetectorBox": "onnx_model", "Sample": "data", "Store": "store", "TrackConfig": "config",
    "TrainConfig": "config", "TrainingDivergedError": "engine", "WeightsUnavailableError": "weights",
    "evaluate_detections": "metrics", "export_model": "export", "load_image": "images", "make_demo": "demo", "resolve": "models",
    "track_video": "tracking",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
