"""ONNX export for edge devices: onnxruntime gives PyTorch's boxes and scores (SSD and a Faster R-CNN),
the file describes itself, DetectorBox.load / model specs run it for predict and tracking, and bad
input is one line."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from conftest import FRCNN, ROOT, SHARED_REAL, TINY, open_page
from cowdetect import DetectorBox, Detections, OnnxDetectorBox, export_model, resolve
from cowdetect.cli import main
from cowdetect.demo import demo_image
from cowdetect.engine import to_tensor
from cowdetect.images import load_image
from cowdetect.ssd_weights import FILE_NAME

SSD = "ssd_mobilenet_v2_coco"
REAL = sorted(SHARED_REAL.glob("*.jpg")) if SHARED_REAL.is_dir() else []


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_same(ref: Detections, got: Detections) -> None:
    """Same boxes (≤ 0.5 px), scores (≤ 1e-4) and classes, paired one to one. Boxes are paired by
    position, not by rank: near-equal scores may be ranked differently by the two runtimes."""
    assert len(got) == len(ref)
    cost = np.abs(ref.xyxy[:, None] - got.xyxy[None]).max(-1) + 1e6 * (ref.class_id[:, None] != got.class_id[None])
    rows, cols = linear_sum_assignment(cost)
    assert (ref.class_id[rows] == got.class_id[cols]).all()
    assert np.abs(ref.xyxy[rows] - got.xyxy[cols]).max() <= 0.5
    assert np.abs(ref.score[rows] - got.score[cols]).max() <= 1e-4


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def ssd(weights_dir, tmp_path_factory) -> tuple[DetectorBox, OnnxDetectorBox]:
    """The pretrained SSD (COCO weights packaged offline) and its export, run by onnxruntime."""
    box = DetectorBox(SSD, weights="coco", device="cpu", weights_dir=weights_dir)
    path = export_model(box, tmp_path_factory.mktemp("onnx") / "ssd.onnx")
    return box, DetectorBox.load(path, device="cpu")


def calibrated_frcnn() -> DetectorBox:
    """A tiny random Faster R-CNN whose scores differ from box to box. Untrained, its MobileNetV3
    features fade to ~1e-8, so every box scores the same and the comparison would be of ties; one
    forward pass in train mode over demo training images sets batch-norm statistics (no gradient,
    ~0.1 s). Statistics from flat, untextured images instead make the net amplify float rounding
    (scores then differ by ~1e-3 between any two runtimes): calibrate on images like the test's."""
    torch.manual_seed(0)
    box = DetectorBox(FRCNN, weights=None, device="cpu", score_threshold=0.0, **TINY)
    model = box.model
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over this one pass
    model.train()
    with torch.no_grad():
        train = [load_image(demo_image(0, "train", i)[0]) for i in range(4)]
        images, _ = model.transform([to_tensor(rgb, torch.device("cpu")) for rgb in train])
        model.backbone(images.tensors)
    model.eval()
    return box


@pytest.fixture(scope="module")
def frcnn(tmp_path_factory) -> tuple[DetectorBox, OnnxDetectorBox]:
    box = calibrated_frcnn()
    path = export_model(box, tmp_path_factory.mktemp("onnx") / "frcnn.onnx")
    return box, DetectorBox.load(path, device="cpu")


def demo_file(tmp: Path, i: int = 0) -> Path:
    """The demo's i-th test image as a JPEG file (the CLI takes paths)."""
    path = tmp / f"demo{i}.jpg"
    path.write_bytes(demo_image(0, "test", i)[0])
    return path


def demo_images() -> list[np.ndarray]:
    """The demo's test images, and a crop of each: two sizes and aspects through one graph."""
    images = [load_image(demo_image(0, "test", i)[0]) for i in range(3)]
    return images + [np.ascontiguousarray(im[: im.shape[0] // 2, : im.shape[1] // 3]) for im in images]


def test_ssd_onnx_equals_pytorch_on_demo_images(ssd):
    torch_box, onnx_box = ssd
    images = demo_images()
    ref, got = torch_box.predict(images), onnx_box.predict(images)
    assert sum(len(r) for r in ref) >= 20 and min(len(r) for r in ref) >= 1  # never a comparison of nothing
    for r, g in zip(ref, got):
        assert_same(r, g)


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_ssd_onnx_equals_pytorch_on_real_photos(ssd, path):
    torch_box, onnx_box = ssd
    rgb = load_image(path)
    ref = torch_box.predict(rgb)
    assert len(ref) >= 1
    assert_same(ref, onnx_box.predict(rgb))


def test_frcnn_onnx_equals_pytorch_on_demo_images(frcnn):
    torch_box, onnx_box = frcnn
    images = demo_images()
    # one image per call: a PyTorch batch pads images of different sizes to one, which moves boxes
    ref, got = [torch_box.predict(im) for im in images], onnx_box.predict(images)
    assert sum(len(r) for r in ref) >= 100 and min(len(r) for r in ref) >= 2  # never a comparison of nothing
    assert len(np.unique(np.concatenate([r.score for r in ref]))) >= 90  # varied scores, not one tie
    for r, g in zip(ref, got):
        assert_same(r, g)


def test_file_describes_itself(ssd):
    """Read with the onnx package alone: what a user without cowdetect needs is in the metadata."""
    torch_box, onnx_box = ssd
    proto = onnx.load(str(onnx_box.onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list(torch_box.class_names)
    assert json.loads(meta["class_names"])[21] == "cow"
    assert (meta["input_size"], meta["architecture"], meta["colour_order"]) == ("300", SSD, "RGB")
    assert meta["box_format"] == "xyxy pixels of the input image"
    assert float(meta["score_threshold"]) == torch_box.config.score_threshold
    # the graph scores cow as cow, horse or sheep, as the PyTorch model does, and says so
    assert json.loads(meta["score_group"]) == ["cow", "horse", "sheep"] == list(onnx_box.config.score_group)
    assert [i.name for i in proto.graph.input] == ["image"]
    shape = proto.graph.input[0].type.tensor_type
    assert shape.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in shape.shape.dim] == ["height", "width", 3]
    assert [o.name for o in proto.graph.output] == ["boxes", "scores", "labels"]
    assert (onnx_box.classes, onnx_box.input_size, onnx_box.architecture) == \
           (torch_box.classes, 300, SSD)


def test_onnx_tracks_as_pytorch_does(ssd, video_store, tmp_path):
    from cowdetect import track_video

    torch_box, onnx_box = ssd
    video = video_store.videos()[0].path
    a = track_video(video, torch_box, None, tmp_path / "torch.txt")
    b = track_video(video, onnx_box, None, tmp_path / "onnx.txt")
    assert a.num_tracks >= 1 and b.num_tracks == a.num_tracks
    rows_a, rows_b = (np.loadtxt(tmp_path / f"{n}.txt", delimiter=",", ndmin=2) for n in ("torch", "onnx"))
    assert rows_a.shape == rows_b.shape
    assert np.abs(rows_a - rows_b).max() <= 0.5  # frame, id, x, y, w, h, score


def test_model_spec_names_an_onnx_file(ssd, store):
    _, onnx_box = ssd
    ref = resolve(store, str(onnx_box.onnx_path))
    assert (ref.kind, ref.architecture) == ("onnx", SSD)
    opened = DetectorBox.open(ref, "cpu")
    assert isinstance(opened, OnnxDetectorBox) and opened.origin == ref.label


def test_training_an_onnx_model_is_refused(ssd, blocks):
    _, onnx_box = ssd
    with pytest.raises(ValueError, match=r"^train: ssd\.onnx is an ONNX export, for inference only"):
        onnx_box.train(blocks, iterations=1)
    with pytest.raises(ValueError, match="already an ONNX export"):
        export_model(onnx_box, onnx_box.onnx_path.with_name("again.onnx"))
    with pytest.raises(ValueError, match="use the PyTorch module of: ssd.onnx is an ONNX export"):
        onnx_box.model  # noqa: B018 - code reaching for the torch module gets one line, not an AttributeError


def test_a_training_run_from_an_onnx_model_is_refused_before_it_is_queued(ssd, demo_store):
    from cowdetect import jobs

    _, onnx_box = ssd
    runs = len(demo_store.runs())
    with pytest.raises(ValueError, match=r"^base: .*ssd\.onnx.* is an ONNX export, for inference only"):
        jobs.training_settings(demo_store, base=str(onnx_box.onnx_path), iterations=1)
    assert len(demo_store.runs()) == runs


def test_cli_export_then_predict_with_the_file(ssd, weights_dir, tmp_path):
    """export-model writes the file (the SSD's converted weights copied in, not converted again);
    predict --model FILE.onnx gives the PyTorch model's boxes."""
    torch_box, _ = ssd
    data = tmp_path / "data"
    (data / "weights").mkdir(parents=True)
    for f in weights_dir.iterdir():
        shutil.copy(f, data / "weights" / f.name)
    out = tmp_path / "cows.onnx"
    code, stdout, err = cli("export-model", f"coco:{SSD}", "--out", str(out), "--data-dir", str(data), "--json")
    assert code == 0, err
    assert json.loads(stdout)["input_size"] == 300 and out.is_file()
    image = demo_file(tmp_path, 1)
    code, stdout, err = cli("predict", str(image), "--model", str(out), "--data-dir", str(data), "--json",
                            "--score-threshold", "0.3")
    assert code == 0, err
    got = json.loads(stdout)
    ref = torch_box.predict(image, score_threshold=0.3)
    assert len(got["pred_boxes"]) == len(ref) >= 1
    assert np.abs(np.array(got["pred_boxes"]) - ref.xyxy).max() <= 0.5


def test_example_runs_without_cowdetect_or_torch(ssd, tmp_path):
    """examples/onnx_predict.py: numpy, PIL and onnxruntime only; its boxes are PyTorch's."""
    torch_box, onnx_box = ssd
    image = demo_file(tmp_path, 1)
    probe = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
             "assert not {'torch', 'cowdetect'} & set(sys.modules), 'imported torch or cowdetect'")
    done = subprocess.run([sys.executable, "-c", probe, str(ROOT / "examples" / "onnx_predict.py"),
                           str(onnx_box.onnx_path), str(image), "--json", "--score-threshold", "0.3"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    ref = torch_box.predict(image, score_threshold=0.3)
    assert [f["class"] for f in found] == ref.names and len(found) >= 1
    assert np.abs(np.array([f["box_xyxy"] for f in found]) - ref.xyxy).max() <= 0.5


# -- bad input: one line each, nothing written ---------------------------------------------------

def _junk(tmp: Path) -> Path:
    (tmp / "junk.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    return tmp / "junk.onnx"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.onnx").write_bytes(b"")
    return tmp / "empty.onnx"


def _foreign(tmp: Path) -> Path:
    """A valid ONNX model that cowdetect did not write (an identity)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [None, None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp / "foreign.onnx")
    return tmp / "foreign.onnx"


def _cut(tmp: Path, ssd_box: OnnxDetectorBox) -> Path:
    (tmp / "cut.onnx").write_bytes(ssd_box.onnx_path.read_bytes()[:100_000])
    return tmp / "cut.onnx"


@pytest.mark.parametrize("make, message", [
    (_junk, r"^weights: .*junk\.onnx is not a readable ONNX model \("),
    (_empty, r"^weights: .*empty\.onnx is empty \(0 bytes\), not an ONNX model$"),
    (_foreign, r"^weights: .*foreign\.onnx is an ONNX model but not a cowdetect export"),
    (lambda tmp: tmp / "missing.onnx", r"^weights: no ONNX file at .*missing\.onnx$"),
])
def test_bad_onnx_files_are_one_line(ssd, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        DetectorBox.load(path)
    assert "\n" not in str(err.value)
    code, out, stderr = cli("predict", str(demo_file(tmp_path)),
                            "--model", str(path), "--data-dir", str(tmp_path / "data"))
    assert (code, out) == (2, "") and stderr.count("\n") == 1 and stderr.startswith("error: weights: ")


def test_cut_off_export_is_one_line(ssd, tmp_path):
    with pytest.raises(ValueError, match=r"^weights: .*cut\.onnx is not a readable ONNX model \("):
        DetectorBox.load(_cut(tmp_path, ssd[1]))


@pytest.mark.parametrize("args, message", [
    (["/nowhere/model.pt", "--out", "{tmp}/m.onnx"], "error: weights: no checkpoint file at /nowhere/model.pt"),
    (["#7", "--out", "{tmp}/m.onnx"], "error: model: no version with id 7"),
    (["pretrained", "--format", "tflite", "--out", "{tmp}/m.onnx"],
     "error: --format: expected one of onnx, got 'tflite'"),
    (["pretrained", "--out", "{tmp}/no/such/folder/m.onnx"], "error: --out: the folder {tmp}/no/such/folder does not exist"),
    (["pretrained", "--out", "{tmp}"], "error: --out: {tmp} is a folder; give a file name"),
    (["pretrained", "--out", "{tmp}/m.pt"], "error: --out: expected a file ending in .onnx, got {tmp}/m.pt"),
    (["pretrained"], "error: the following arguments are required: --out"),
    (["{tmp}/m.onnx", "--out", "{tmp}/m.onnx"], "error: --out: {tmp}/m.onnx is an input of this command"),
])
def test_export_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "m.onnx").write_bytes(b"")  # an existing input for the last row
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli("export-model", *[a.format(tmp=tmp_path) for a in args], "--data-dir", str(tmp_path / "d"))
    assert (code, out) == (2, "")
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "d") == before  # nothing written


def test_export_page_offers_the_file(ssd, weights_dir, store, monkeypatch):
    """Models page: pick a model, prepare, and the download button carries a real ONNX file."""
    for f in weights_dir.iterdir():  # the SSD's converted weights, so the page does not convert them again
        store.weights_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, store.weights_dir / f.name)
    assert (store.weights_dir / FILE_NAME).is_file()
    at = open_page("models", store, monkeypatch)
    assert at.selectbox(key="export_spec").value == "active"
    at.button(key="export_onnx").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [button] = at.get("download_button")
    assert button.proto.label.startswith(f"Download pretrained-{SSD}-cow-horse-sheep.onnx (67.") and "90 classes" in button.proto.label


def _constant_export(tmp: Path, name: str, boxes: list, labels: list, **meta: str) -> Path:
    """A real ONNX graph carrying cowdetect metadata (``meta`` overriding it) whose outputs are
    constants: what a hostile or hand-edited file can claim."""
    from onnx import TensorProto, helper, numpy_helper

    outputs = {"boxes": np.array(boxes, np.float32), "scores": np.full(len(labels), 0.9, np.float32),
               "labels": np.array(labels, np.int64)}
    nodes = [helper.make_node("Constant", [], [key], value=numpy_helper.from_array(value, key + "_value"))
             for key, value in outputs.items()] + [helper.make_node("Shape", ["image"], ["size"])]
    types = {"boxes": TensorProto.FLOAT, "scores": TensorProto.FLOAT, "labels": TensorProto.INT64}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, None, 3])],
                              [helper.make_tensor_value_info(key, types[key], None) for key in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    props = {"format": "cowdetect-onnx", "format_version": "1", "architecture": "ssd_mobilenet_v2_coco",
             "class_names": json.dumps(["__background__", "cow"]), "input_size": "300", "score_threshold": "0.3",
             "max_detections": "100", **meta}
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, tmp / f"{name}.onnx")
    return tmp / f"{name}.onnx"


@pytest.mark.parametrize("meta", [{"architecture": "evil\narchitecture"}, {"input_size": "0"},
                                  {"class_names": json.dumps(["bg", "cow\nforged row"])},
                                  {"class_names": json.dumps(["bg"] + [f"c{i}" for i in range(100_000)])},
                                  {"score_group": json.dumps(["cow", "zebu"])}, {"score_group": '"cow"'},
                                  {"score_group": "[1, 2]"}, {"score_group": "{"}])
def test_hostile_onnx_metadata_is_refused(tmp_path, meta):
    """Hostile test: metadata with a line break, no input size or 10⁵ class names loaded as a model."""
    with pytest.raises(ValueError, match=r"^weights: .*its cowdetect metadata is incomplete or damaged"):
        DetectorBox.load(_constant_export(tmp_path, "hostile", [[1, 2, 30, 40]], [1], **meta), device="cpu")


@pytest.mark.parametrize("boxes, labels", [([[1, 2, 30, 40]], [7]), ([[1, 2, 30, 40, 50]], [1])])
def test_onnx_outputs_that_are_no_detections_name_the_file(tmp_path, boxes, labels):
    """Hostile test: a graph whose labels lie outside its class names, or boxes of 5 numbers."""
    box = DetectorBox.load(_constant_export(tmp_path, "liar", boxes, labels), device="cpu")  # loads: it is valid
    with pytest.raises(ValueError, match=r"^weights: liar\.onnx gave outputs that are not detections of its classes"):
        box.detect_arrays([np.zeros((90, 160, 3), np.uint8)])
