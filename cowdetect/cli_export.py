"""The command line's ``export-model``: a detector as one ONNX file for edge devices
(:mod:`cowdetect.export`); every argument and the output path are checked before any work."""

from __future__ import annotations

import argparse
import sys
import time

from .cli_checks import distinct_files, output_file, whole


def add_export_model_args(p: argparse.ArgumentParser) -> None:
    from .config import MODEL_SPEC_HELP

    p.add_argument("model", metavar="MODEL", help=f"the model to export, {MODEL_SPEC_HELP}")
    p.add_argument("--format", default="onnx", help="file format: onnx (the only one so far; default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (FILE.onnx)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (where the model is opened; the export "
                                                     "itself runs on the CPU)")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=0, help="seed for an untrained model's weights")


def cmd_export_model(args: argparse.Namespace) -> int:
    from .detector import DetectorBox
    from .export import EXPORT_FORMATS, check_format, export_model
    from .models import resolve
    from .store import Store

    fmt = check_format(args.format)
    output_file(args.out, "--out", (EXPORT_FORMATS[fmt],))
    distinct_files([(args.out, "--out")], [args.model])
    store = Store(args.data_dir)
    store.require("manage_models")  # an export carries a model's weights out of the data folder
    ref = resolve(store, args.model, args.device)
    box = DetectorBox.open(ref, args.device, classes=store.classes(), weights_dir=store.weights_dir, seed=args.seed)
    print(f"model: {box.origin}", file=sys.stderr)
    started = time.perf_counter()
    path = export_model(box, args.out, fmt, source=ref.label)
    summary = {"out": str(path), "format": fmt, "model": ref.label, "architecture": box.architecture,
               "classes": list(box.classes), "input_size": box.input_size, "bytes": path.stat().st_size,
               "seconds": round(time.perf_counter() - started, 2)}
    if args.json:
        import json
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {path} ({summary['bytes'] / 1e6:.1f} MB, {fmt}) from {ref.label}: input RGB uint8 of any "
              f"size (the model sees {box.input_size} px), boxes xyxy pixels, {len(box.classes)} classes; run it "
              f"with examples/onnx_predict.py or python -m cowdetect predict IMAGE --model {path}")
    return 0
