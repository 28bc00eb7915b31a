"""The GPU path: training and evaluation on CUDA with mixed precision (SSD-MobileNetV2 and the seed's
Faster R-CNN ResNet-50 FPN), DDP over NCCL with one process and, where there are two GPUs, two,
and "pretrained" meaning one model for the library and the jobs. Marked ``gpu``; without a CUDA GPU
every test here is skipped with that reason (``-ra`` lists it). On a GPU machine:
``./run.sh test tests/test_gpu.py``. The numbers (images/s, iterations/s) come from
``bench/bench_gpu.py``."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import wait_for  # noqa: F401 - the suite's helpers load with conftest
from cowdetect import jobs
from cowdetect.config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE
from cowdetect.demo import make_demo
from cowdetect.detector import DetectorBox
from cowdetect.models import coco_weights_available, resolve
from cowdetect.store import Store

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the GPU path (mixed "
                                 "precision, NCCL) runs only on a machine with one")]


@pytest.fixture(scope="module")
def gpu_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("gpu") / "data")
    make_demo(store, n_train=16, n_val=4, n_test=8, seed=5, size=(320, 240), video=False)
    return store


def half_precision_seen(box: DetectorBox) -> list[torch.dtype]:
    """Records the output dtype of the model's first convolution on each forward pass."""
    conv = next(m for m in box.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[torch.dtype] = []
    conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    return seen


@pytest.mark.parametrize("architecture, weights", [(DEFAULT_ARCHITECTURE, "coco"), (GPU_ARCHITECTURE, None)])
def test_trains_and_evaluates_with_mixed_precision_on_cuda(gpu_store, architecture, weights):
    box = DetectorBox(architecture, weights=weights, classes=("cow",), device="cuda")
    seen = half_precision_seen(box)
    history = box.train(gpu_store.dataset("train"), iterations=6, batch_size=4)
    assert len(history) == 6 and all(math.isfinite(h["loss"]) for h in history)
    assert torch.float16 in seen  # autocast was on for the training forward passes
    assert next(box.model.parameters()).dtype == torch.float32  # the weights stay full precision
    result = box.evaluate(gpu_store.dataset("test"))
    assert 0.0 <= result.map_50 <= 1.0
    found = box.predict(gpu_store.dataset("test").samples[0].load())
    assert found.xyxy.dtype.kind == "f" and (found.xyxy[:, 2:] >= found.xyxy[:, :2]).all()


def ddp_run(store: Store, nproc: int) -> int:
    settings = jobs.training_settings(store, base=f"untrained:{DEFAULT_ARCHITECTURE}", iterations=4, batch_size=4,
                                      checkpoint_every=2, eval_every=4, device="cuda", nproc=nproc,
                                      name=f"ddp{nproc}")
    return jobs.create_training_run(store, settings)


def test_ddp_over_nccl_with_one_process(gpu_store):
    """World size 1 through torchrun: the whole DDP path (NCCL init, SyncBatchNorm, all-reduce)."""
    from cowdetect.jobs.train import train_on_ranks
    from cowdetect.jobs.machinery import start, stderr_log

    run_id = ddp_run(gpu_store, 1)
    run = start(gpu_store, run_id, "train", stderr_log)
    done = train_on_ranks(gpu_store, run, stderr_log, 1.0, None, 600)
    assert done.status == "done" and done.iteration == 4 and done.model_id is not None
    assert [p["iteration"] for p in gpu_store.points(run_id)] == [1, 2, 3, 4]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than two GPUs here: DDP on two needs two")
def test_ddp_over_nccl_with_two_gpus(gpu_store):
    run_id = ddp_run(gpu_store, 2)
    done = jobs.run_training(gpu_store, run_id)
    assert done.status == "done" and done.iteration == 4
    assert [p["iteration"] for p in gpu_store.points(run_id)] == [1, 2, 3, 4]  # rank 0 alone writes


def test_pretrained_means_one_model_for_the_library_and_the_jobs(gpu_store):
    """With or without the ResNet-50 FPN's COCO weights in torch's cache, DetectorBox.pretrained()
    and a job's pinned 'pretrained' name the same architecture on the GPU."""
    box = DetectorBox.pretrained("cuda", weights_dir=gpu_store.weights_dir)
    ref = resolve(gpu_store, "pretrained", "cuda")
    settings = jobs.evaluation_settings(gpu_store, model="pretrained", device="cuda")
    expected = GPU_ARCHITECTURE if coco_weights_available(GPU_ARCHITECTURE) else DEFAULT_ARCHITECTURE
    assert box.architecture == ref.architecture == expected
    assert settings["model"] == ref.pinned == f"coco:{expected}"
