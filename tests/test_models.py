"""Architectures by name and where COCO weights come from."""

from urllib.error import URLError

import pytest
import torch

from cowdetect import DetectorBox
from cowdetect.models import ARCHITECTURES, coco_class_names, get_architecture, replace_head
from cowdetect.weights import WeightsUnavailableError, cache_path

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


def test_wrong_architecture_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_architecture("yolo_v99")
    for name in ARCHITECTURES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn"):
        DetectorBox("yolo_v99")


def test_seed_architecture_is_available():
    assert "fasterrcnn_resnet50_fpn" in ARCHITECTURES


def test_coco_names():
    names = coco_class_names(ARCH)
    assert len(names) == 91 and names[1] == "person" and names[18] == "dog" and names[21] == "cow"


def _fake_coco_file(monkeypatch, tmp_path):
    """Put a real state dict with COCO's layout (91 classes) where torch's cache looks.

    It is not COCO's trained weights (those are a download), but it is the same file format
    and layout, so the cached-file path runs for real.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = get_architecture(ARCH).coco_weights.url
    target = cache_path(url)
    target.parent.mkdir(parents=True)
    torch.manual_seed(1)
    model = ARCHITECTURES[ARCH].builder(weights=None, weights_backbone=None, num_classes=91)
    # COCO weights use FrozenBatchNorm2d, which has no num_batches_tracked buffers.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, target)
    return state


def test_coco_weights_read_from_torch_cache(monkeypatch, tmp_path):
    state = _fake_coco_file(monkeypatch, tmp_path)
    box = DetectorBox(ARCH, weights="coco", device="cpu")
    assert len(box.class_names) == 91 and box.class_names[21] == "cow"
    w = box.model.roi_heads.box_predictor.cls_score.weight
    assert torch.equal(w, state["roi_heads.box_predictor.cls_score.weight"])


def test_coco_to_cow_initialises_cow_from_coco_class_21(monkeypatch, tmp_path):
    state = _fake_coco_file(monkeypatch, tmp_path)
    box = DetectorBox(ARCH, weights="coco", classes=["cow"], device="cpu")
    head = box.model.roi_heads.box_predictor
    assert box.class_names == ("__background__", "cow") and head.cls_score.out_features == 2
    assert torch.equal(head.cls_score.weight[1], state["roi_heads.box_predictor.cls_score.weight"][21])
    assert torch.equal(head.cls_score.weight[0], state["roi_heads.box_predictor.cls_score.weight"][0])
    assert torch.equal(head.bbox_pred.weight[4:8], state["roi_heads.box_predictor.bbox_pred.weight"][84:88])


def test_offline_download_gives_clear_message(monkeypatch, tmp_path):
    # The one mock in the suite: the download itself cannot run here (no internet), so the
    # network call is replaced by the error urllib raises offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        DetectorBox(ARCH, weights="coco", device="cpu")
    message = str(err.value)
    assert "https://download.pytorch.org/models/" in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in message


def test_replace_head_without_matching_names_is_random():
    model = ARCHITECTURES[ARCH].builder(weights=None, weights_backbone=None, num_classes=3)
    replace_head(model, ("__background__", "a", "b"), ("__background__", "cow"))
    assert model.roi_heads.box_predictor.cls_score.out_features == 2


def test_cuda_without_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        DetectorBox(weights=None, device="cuda")


# -- the model spec: one grammar, one resolver -------------------------------------------------

@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two stored versions, alpha (#1) and beta (#2); tests that change the store use their own."""
    from conftest import add_tiny_model
    from cowdetect.store import Store
    store = Store(tmp_path_factory.mktemp("models") / "data")
    add_tiny_model(store, "alpha")
    add_tiny_model(store, "beta")
    return store


@pytest.mark.parametrize("spec, kind, model_id, label", [
    ("#1", "stored", 1, "alpha (#1)"), ("1", "stored", 1, "alpha (#1)"), (2, "stored", 2, "beta (#2)"),
    ("beta", "stored", 2, "beta (#2)"), ("active", "stored", 2, "beta (#2)"),
    ("untrained", "untrained", None, "untrained ssd_mobilenet_v2_coco"),
    (f"untrained:{ARCH}", "untrained", None, f"untrained {ARCH}"), (f"coco:{ARCH}", "coco", None, f"coco {ARCH}"),
])
def test_resolve_every_form(two_models, spec, kind, model_id, label):
    from cowdetect.models import resolve
    ref = resolve(two_models, spec, "cpu")
    assert (ref.kind, ref.model_id, ref.label) == (kind, model_id, label)


def test_an_id_never_loads_a_version_named_like_it(two_models):
    """Before: Store.model("2") matched `name = '2' OR id = 2`, so a version named "2" could be loaded for
    id 2. Names now start with a letter, and the resolver reads digits as ids only."""
    from cowdetect.models import resolve
    with pytest.raises(ValueError, match="starting with a letter"):
        two_models.rename_model(1, "2")
    assert resolve(two_models, "2", "cpu").model_id == 2 and resolve(two_models, "alpha", "cpu").model_id == 1
    with pytest.raises(ValueError, match="no version with id 9"):
        resolve(two_models, "9", "cpu")


@pytest.mark.parametrize("spec, message", [
    ("", "expected a model spec"), ("-x", "expected a model spec"), ("coco:yolo", "architecture: expected one of"),
    ("gamma", "no version called 'gamma'; stored versions: alpha \\(#1\\), beta \\(#2\\)"),
    ("missing.pt", "no checkpoint file"), (None, "expected a model spec"), (True, "expected a model spec"),
])
def test_bad_specs_list_what_is_valid(two_models, spec, message):
    from cowdetect.models import resolve
    with pytest.raises(ValueError, match=message):
        resolve(two_models, spec, "cpu")


def test_a_checkpoint_file_is_a_spec_for_training_too(store, tmp_path):
    """Before: `train --help` said --weights takes a checkpoint, and the job refused one."""
    from conftest import add_tiny_model
    from cowdetect import jobs
    from cowdetect.demo import make_demo
    from cowdetect.models import resolve
    two_models = store
    add_tiny_model(store, "alpha")
    make_demo(two_models, n_train=5, n_val=0, n_test=0, size=(96, 64), video=False)
    path = tmp_path / "mine.pt"
    DetectorBox.load(two_models.model(1).checkpoint, device="cpu").save(path)
    ref = resolve(two_models, str(path), "cpu")
    assert (ref.kind, ref.architecture, ref.checkpoint) == ("file", ARCH, path)
    settings = jobs.training_settings(two_models, base=str(path), iterations=1)
    assert settings["base"] == str(path) and settings["architecture"] == ARCH and settings["parent_id"] is None
    assert settings["config"]["batch_size"] == 2  # the Faster R-CNN row of the defaults table, not SSD's


def test_pretrained_means_one_model_everywhere(store, monkeypatch):
    """Before: on a GPU without cached ResNet-50 weights, the job settings said ResNet-50 while
    DetectorBox.pretrained() fell back to SSD, which then trained with Faster R-CNN settings."""
    from cowdetect import jobs, models
    from cowdetect.demo import make_demo
    make_demo(store, n_train=5, n_val=0, n_test=0, size=(96, 64), video=False)
    cuda = torch.device("cuda")
    monkeypatch.setattr(models, "coco_weights_available", lambda arch: False)  # a GPU machine, weights not cached
    assert models.pretrained_architecture(cuda) == "ssd_mobilenet_v2_coco"
    monkeypatch.setattr(models, "coco_weights_available", lambda arch: True)  # and with them
    assert models.pretrained_architecture(cuda) == "fasterrcnn_resnet50_fpn"
    assert models.pretrained_architecture(torch.device("cpu")) == "ssd_mobilenet_v2_coco"
    # the job, the label and the box agree (on this machine's device)
    settings = jobs.training_settings(store, base="pretrained", iterations=1)
    box = DetectorBox.pretrained(settings["device"], weights_dir=store.weights_dir)
    assert settings["architecture"] == box.architecture and settings["base"] == f"coco:{box.architecture}"
    assert settings["base_label"] == models.coco_label("pretrained", box.architecture)
    assert box.origin.startswith(settings["base_label"])
    assert settings["config"]["batch_size"] == jobs.training_settings(store, base=settings["base"])["config"]["batch_size"]


@pytest.mark.parametrize("spec, message", [
    ("##1", "expected a model spec"), ("²", "expected a model spec"), ("０", "expected a model spec"),
    ("coco", "expected a model spec"), ("coco:", "names no architecture"), ("untrained:", "names no architecture"),
])
def test_odd_specs_are_one_clear_message(two_models, spec, message):
    from cowdetect.models import resolve
    with pytest.raises(ValueError, match=message):
        resolve(two_models, spec, "cpu")


@pytest.mark.parametrize("content", [b"hello", b"\x80\x02}q\x00.", b"PK\x03\x04 not a zip"])
def test_a_junk_checkpoint_file_is_a_value_error(two_models, tmp_path, content):
    """torch.load raises KeyError / IndexError / TypeError on some junk, which reached users as a traceback."""
    from cowdetect.models import resolve
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable cowdetect checkpoint|not a cowdetect checkpoint"):
        resolve(two_models, str(path), "cpu")


def test_two_files_of_the_same_name_have_different_labels(two_models, tmp_path):
    from cowdetect.models import resolve
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    DetectorBox.load(two_models.model(1).checkpoint, device="cpu").save(tmp_path / "a" / "m.pt")
    DetectorBox.load(two_models.model(2).checkpoint, device="cpu").save(tmp_path / "b" / "m.pt", meta={"other": 1})
    labels = {resolve(two_models, str(tmp_path / d / "m.pt"), "cpu").label for d in "ab"}
    assert len(labels) == 2 and all(label.startswith("m.pt (file ") for label in labels)


def test_only_an_ssd_takes_a_score_group_and_its_coco_label_says_so():
    """Faster R-CNN's softmax shares one budget among classes: its scores do not combine as
    independent chances, so a group is refused there, and its COCO label names none."""
    from cowdetect import models
    box = DetectorBox(ARCH, weights=None, classes=["cow", "horse"], device="cpu")
    with pytest.raises(ValueError, match="only an SSD"):
        box.set_score_group(("cow", "horse"))
    assert box.config.score_group == ()
    assert models.coco_label("coco", ARCH) == f"coco {ARCH}"
    assert models.coco_label("pretrained", "ssd_mobilenet_v2_coco") == \
        "pretrained ssd_mobilenet_v2_coco (cow+horse+sheep)"
