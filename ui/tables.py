"""Tables the pages show, as DataFrames built from store rows (no Streamlit here)."""

from __future__ import annotations

import json
from typing import Callable, Sequence
from urllib.parse import urlencode

import pandas as pd

from cowdetect.store import ModelRecord, ResultRecord, RunRecord


def model_table(models: Sequence[ModelRecord]) -> pd.DataFrame:
    """One row per model version: active mark, label, architecture, lineage, training and scores."""
    names = {m.id: m.label for m in models}

    def change(m: ModelRecord) -> str:
        before, after = m.params.get("before"), m.params.get("after")
        return f"{before['map_50']:.3f} → {after['map_50']:.3f}" if before and after else ""

    return pd.DataFrame([{
        "active": "✅" if m.active else "", "version": m.label, "architecture": m.architecture,
        "classes": ", ".join(m.classes), "parent": names.get(m.parent_id, ""), "iterations": m.params.get("iterations"),
        "test mAP50 before → after": change(m), "best val mAP50": m.params.get("best_val_map_50"),
        "seconds": m.params.get("seconds"), "device": m.params.get("device"), "created": m.created_at}
        for m in models], columns=["active", "version", "architecture", "classes", "parent", "iterations",
                                   "test mAP50 before → after", "best val mAP50", "seconds", "device", "created"])


def results_table(results: Sequence[ResultRecord]) -> pd.DataFrame:
    """One row per stored evaluation: id, model, split, split content hash, mAP, mAP50, mAP75, when."""
    return pd.DataFrame([{"id": r.id, "model": r.model_label, "split": r.split, "data": r.dataset_hash,
                          "mAP": r.metrics["map"], "mAP50": r.metrics["map_50"], "mAP75": r.metrics["map_75"],
                          "when": r.created_at} for r in results],
                        columns=["id", "model", "split", "data", "mAP", "mAP50", "mAP75", "when"])


def comparison_table(done: dict[str, ResultRecord], labels: dict[str, str]) -> pd.DataFrame:
    """Evaluations side by side, indexed by model label: mAPs, recall, AP per class, images, when."""
    return pd.DataFrame([{"model": labels[m], "mAP@[.5:.95]": r.metrics["map"], "mAP50": r.metrics["map_50"],
                          "mAP75": r.metrics["map_75"], "recall@100": r.metrics["mar_100"],
                          **{f"AP {c}": v["ap"] for c, v in r.metrics["per_class"].items()},
                          "images": r.metrics["num_images"], "evaluated": r.created_at}
                         for m, r in done.items()]).set_index("model")


def pr_curves(done: dict[str, ResultRecord], labels: dict[str, str]) -> pd.DataFrame:
    """Precision at IoU 0.5 (first class) over recall 0, 0.01 … 1, a column per model; gaps as NaN."""
    curve = pd.DataFrame({labels[m]: next(iter(r.metrics.get("pr_curve", {}).values()), [None] * 101)
                          for m, r in done.items()})
    curve.index = [i / 100 for i in range(101)]
    return curve.where(curve >= 0)


def per_image_table(rows: Sequence[dict], spec: str, thumb: Callable[[int], str | None]) -> pd.DataFrame:
    """Per-image results (worst first) with a thumbnail (``thumb``: None for a deleted image) and
    a link to the image on the Predictions page with the model ``spec``."""
    return pd.DataFrame([{"image": thumb(r["image_id"]), "image id": r["image_id"], "AP": r["ap"],
                          "AP50": r["ap_50"], "cows": r["n_gt"], "missed": r["fn"], "false positives": r["fp"],
                          "open": "/predictions?" + urlencode({"image": r["image_id"], "model": spec})}
                         for r in rows],
                        columns=["image", "image id", "AP", "AP50", "cows", "missed", "false positives", "open"])


def track_comparison(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Finished tracking runs side by side, indexed by 'run ID · model': tracks, fps, MOT scores."""
    rows = []
    for run in runs:
        summary, mot = run.metrics["summary"], run.metrics.get("mot", {})
        rows.append({"run": f"run {run.id} · {run.params['model_label']}", "tracks": summary["num_tracks"],
                     "most at once": summary["max_cows_in_frame"], "fps": summary["fps"],
                     **{k: mot.get(k) for k in ("mota", "idf1", "id_switches", "fragmentations",
                                                "mostly_tracked", "mostly_lost")}})
    return pd.DataFrame(rows).set_index("run")


def activity_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The activity log (:meth:`Store.activity` rows, newest first) as when (UTC) · who · what."""
    return pd.DataFrame([{"when (UTC)": r["at"], "who": r["user"],
                          "what": " · ".join(str(v) for v in (r["action"], r["target"], r["detail"]) if v)}
                         for r in rows], columns=["when (UTC)", "who", "what"])


def backup_note(setting: str | None) -> str:
    """One line on the last backup from the ``last_backup`` setting (JSON the backup command
    writes: when and which archive), or how to make one."""
    if not setting:
        return "Last backup: never — `python -m cowdetect backup OUT.tar.gz`"
    try:
        info = json.loads(setting)
    except ValueError:
        info = setting
    if not isinstance(info, dict):
        return f"Last backup: {info}"
    archive = info.get("archive")  # cowdetect.backup writes {"at": UTC time, "archive": file name, ...}
    return f"Last backup: {info.get('at', '?')}" + (f" (`{archive}`)" if archive else "")
