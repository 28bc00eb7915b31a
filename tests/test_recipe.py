"""Fine-tuning that does not forget: WiSE-FT weight averaging and a slower backbone, in the API and in jobs."""

from __future__ import annotations

import torch

from conftest import FRCNN, TINY, blocks_dataset
from cowdetect import DetectorBox, TrainConfig, jobs
from cowdetect.engine import _optimizer
from cowdetect.models import backbone_parameters


def state(box: DetectorBox) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in box.model.state_dict().items()}


def test_keep_start_mixes_the_starting_weights_back():
    data = blocks_dataset(4)
    runs = {}
    for keep in (0.0, 0.5, 1.0):
        torch.manual_seed(0)
        box = DetectorBox(FRCNN, weights=None, device="cpu", **TINY)
        start = state(box)
        box.train(data, config=TrainConfig.for_architecture(FRCNN, iterations=3, warmup_iterations=1, keep_start=keep))
        runs[keep] = (start, state(box))
    key = next(k for k, v in runs[0.0][0].items() if v.is_floating_point() and not torch.equal(v, runs[0.0][1][k]))
    start, trained = runs[0.0][0][key], runs[0.0][1][key]
    assert torch.equal(runs[1.0][1][key], start)  # keep everything: the start
    assert torch.allclose(runs[0.5][1][key], 0.5 * trained + 0.5 * start, atol=1e-6)  # same seed, same training


def test_backbone_learns_at_its_own_rate():
    torch.manual_seed(0)
    box = DetectorBox(FRCNN, weights=None, device="cpu", **TINY)
    optimizer = _optimizer(box.model, TrainConfig.for_architecture(FRCNN, backbone_lr=0.1), None)
    scales = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    backbone = {id(p) for p in backbone_parameters(box.model)}
    assert {scales[i] for i in backbone if i in scales} == {0.1}
    assert {s for i, s in scales.items() if i not in backbone} == {1.0}
    one = _optimizer(box.model, TrainConfig.for_architecture(FRCNN, backbone_lr=1.0), None)
    assert len(one.param_groups) == 1  # what runs checkpointed before this setting hold


def test_a_job_keeps_its_starting_weights_and_mixes_them_into_the_version(job_store_small):
    """The job keeps its starting weights in the run folder (start.pt), so WiSE-FT applies to the
    weights it saves whether the run was resumed or not, and to the best checkpoint it keeps."""
    store = job_store_small
    settings = jobs.training_settings(store, base=f"untrained:{FRCNN}", iterations=3, checkpoint_every=0,
                                      eval_every=0, keep_start=1.0, test_split="", val_split="")
    run = jobs.run_training(store, jobs.create_training_run(store, settings), log=lambda m: None)
    assert run.status == "done"
    start = DetectorBox.load(store.inside(f"runs/run-{run.id}/start.pt"), device="cpu")
    saved = DetectorBox.load(store.model(run.model_id).checkpoint, device="cpu")
    floats = [k for k, v in state(start).items() if v.is_floating_point()]
    assert floats and all(torch.equal(start.model.state_dict()[k], saved.model.state_dict()[k]) for k in floats)
