"""Run a cowdetect ONNX export with onnxruntime alone: no cowdetect, no PyTorch.

    pip install onnxruntime numpy pillow
    python onnx_predict.py cows.onnx photo.jpg [--score-threshold 0.5]

The file carries everything needed (read from its metadata below): the input is one RGB uint8
image (height, width, 3) of any size; resizing, normalisation, box decoding and NMS happen inside
the graph; the outputs are boxes (xyxy pixels of that image), scores (best first) and labels
(indices into the class names). Prints one line per box, then writes a JSON list if asked.
"""

import argparse
import json

import numpy as np
import onnxruntime as ort
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .onnx file written by: python -m cowdetect export-model")
    parser.add_argument("image", help="a photo or video frame (any format PIL reads)")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="print the boxes as one JSON list instead")
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    class_names = json.loads(meta["class_names"])  # index 0 is the background, never output

    # RGB, as the model was trained (PIL gives RGB; OpenCV's imread would give BGR: convert it)
    rgb = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.uint8)
    boxes, scores, labels = session.run(None, {"image": rgb})

    keep = scores >= args.score_threshold
    found = [{"class": class_names[label], "score": round(float(score), 4),
              "box_xyxy": [round(float(v), 2) for v in box]}
             for box, score, label in zip(boxes[keep], scores[keep], labels[keep])]
    if args.json:
        print(json.dumps(found))
        return
    print(f"{len(found)} boxes (score >= {args.score_threshold}) by {meta['architecture']} "
          f"({meta['box_format']}, {meta['colour_order']} input) in a {rgb.shape[1]}x{rgb.shape[0]} image")
    for f in found:
        print(f"  {f['class']:>12}  score {f['score']:.3f}  box {f['box_xyxy']}")


if __name__ == "__main__":
    main()
