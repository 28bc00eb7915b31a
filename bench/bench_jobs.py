"""Job machinery overhead: a training run through cowdetect.jobs vs. the training loop called directly.

Both train the same model with the same settings on the demo images; the job side also
writes progress points every second, checks for stop requests and writes checkpoints
(every 10 iterations here, ten times more often than the default; the direct side too).
Iterations/s are
taken from the loop's own clock, so model loading is left out on both sides; runs are
interleaved and the medians compared. Usage: python bench/bench_jobs.py [--iterations N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cowdetect import DetectorBox, Store, TrainConfig, jobs, make_demo  # noqa: E402
from cowdetect.config import from_dict  # noqa: E402

BASE = "untrained:fasterrcnn_mobilenet_v3_large_320_fpn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        make_demo(store, n_train=16, n_val=0, n_test=0, video=False)
        settings = jobs.training_settings(store, base=BASE, iterations=args.iterations, checkpoint_every=10,
                                          eval_every=0, test_split="", val_split="")
        config = from_dict(TrainConfig, settings["config"])
        dataset = store.dataset("train")
        job_rates, direct_rates = [], []
        for repeat in range(args.repeats):
            settings["name"] = f"bench-{repeat}"
            run_id = jobs.create_training_run(store, settings)
            jobs.run_training(store, run_id, log=lambda message: None)
            points = store.points(run_id)
            job_rates.append(len(points) / points[-1]["seconds"])
            torch.manual_seed(0)
            box = DetectorBox(BASE.split(":")[1], weights=None, device="cpu")
            history = box.train(dataset, config=config, checkpoint_dir=Path(tmp) / f"direct-{repeat}")
            direct_rates.append(len(history) / history[-1]["seconds"])
    job, direct = statistics.median(job_rates), statistics.median(direct_rates)
    print(f"{BASE.split(':')[1]}, {args.iterations} iterations x {args.repeats}, batch {config.batch_size}, CPU "
          f"{torch.get_num_threads()} threads")
    print("| measure | through jobs | direct loop | ratio |")
    print("|---|---|---|---|")
    print(f"| iterations/s (median) | {job:.3f} | {direct:.3f} | {direct / job:.3f}x time |")


if __name__ == "__main__":
    main()
