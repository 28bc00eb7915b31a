"""Getting labeled images in and out: image files and zips, COCO JSON, YOLO, Deep Lake.

Every importer checks everything it is given before it stores it and returns an
:class:`ImportReport` listing what was added and what was skipped, and why. Nothing already
stored is changed: an image that is already in the store (same bytes) keeps its boxes.
Boxes are xyxy pixels inside the store; COCO files use [x, y, width, height] pixels, YOLO
files normalised centre, width and height.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import yaml

from .detections import Detections
from .files import atomic_write, atomic_write_bytes
from .store import Store

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Zip safety: uploads are at most 500 MB (see .streamlit/config.toml); what they unpack to is
# bounded too, and so is the compression ratio of each entry (zip bombs reach 1000:1+;
# JPEG and PNG files barely compress).
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_RATIO = 100
MAX_ENTRIES = 100_000
# A COCO box may overshoot the image by this much (rounding in the annotation tools);
# it is clipped. More than that and the image is skipped.
EDGE_TOLERANCE_PX = 1.0
DEEPLAKE_COCO = "hub://activeloop/coco-train"


@dataclass
class ImportReport:
    """What an import did: images added, already present, boxes added, and (name, reason) skipped."""

    added: int = 0
    already_present: int = 0
    boxes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    image_ids: dict[str, int] = field(default_factory=dict)  # source name -> stored image id

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))

    def store(self, store: Store, name: str, content: Any, split: str, boxes: Detections | None = None,
              file_name: str | None = None) -> None:
        """Add one image (bytes or RGB array) with its boxes to ``store``, counting it here; an
        image that cannot be stored is skipped with the store's reason."""
        try:
            record, created = store.add_image(content, name=file_name or PurePosixPath(name).name, split=split,
                                              boxes=boxes)
        except ValueError as exc:
            self.skip(name, str(exc))
            return
        self.image_ids[name] = record.id
        if created:
            self.added += 1
            self.boxes += len(boxes) if boxes is not None else 0
        else:
            self.already_present += 1

    def summary(self) -> str:
        """One line for a page or the CLI."""
        text = f"{self.added} images added ({self.boxes} boxes), {self.already_present} already stored"
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


# -- image files and zips -------------------------------------------------------------------

def _unsafe_member(name: str) -> str | None:
    """Why a zip member name is unsafe to use, or None."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path in the zip"
    if ".." in path.parts:
        return "'..' in the path (would leave the folder)"
    return None


def zip_entries(data: bytes, label: str, report: ImportReport, suffixes: Sequence[str] = IMAGE_SUFFIXES
                ) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) of the zip's files with one of ``suffixes``, safely.

    Unsafe names ('..', absolute paths), other file types, nested zips and anything past the
    size and ratio limits are recorded in ``report`` and skipped; entries are read with a
    hard cap, so a header that lies about its size cannot unpack more than the limit.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        report.skip(label, "not a valid zip file")
        return
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_ENTRIES:
            report.skip(label, f"{len(infos)} files in the zip; the limit is {MAX_ENTRIES}")
            return
        budget = MAX_UNPACKED_BYTES
        for info in infos:
            name = f"{label}/{info.filename}"
            unsafe = _unsafe_member(info.filename)
            if unsafe:
                report.skip(name, unsafe)
                continue
            suffix = PurePosixPath(info.filename).suffix.lower()
            if suffix == ".zip":
                report.skip(name, "a zip inside a zip is not unpacked")
                continue
            if suffix not in suffixes:
                if not PurePosixPath(info.filename).name.startswith("."):
                    report.skip(name, f"not an image file ({suffix or 'no extension'})")
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                report.skip(name, f"compression ratio {info.file_size // max(1, info.compress_size)}:1 "
                                  f"(over {MAX_RATIO}:1 looks like a zip bomb)")
                continue
            if info.file_size > budget:
                report.skip(name, f"the zip unpacks to more than {MAX_UNPACKED_BYTES // 1024**2} MB")
                break
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                report.skip(name, f"cannot be unpacked ({exc})")
                continue
            if len(content) > info.file_size:
                report.skip(name, "the entry is larger than its header says")
                continue
            budget -= len(content)
            yield info.filename, content


def import_images(store: Store, files: Iterable[tuple[str, bytes]], split: str = "unassigned") -> ImportReport:
    """Store uploaded image files (jpg, png, webp, bmp) and zips of them, unlabeled, in ``split``.

    Non-images with image extensions, corrupt or huge images, unsafe zip entries and zip bombs
    are skipped with a reason; identical images are stored once.
    """
    report = ImportReport()
    for name, data in files:
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".zip":
            for inner, content in zip_entries(data, name, report):
                report.store(store, f"{name}/{inner}", content, split)
        elif suffix in IMAGE_SUFFIXES:
            report.store(store, name, data, split)
        else:
            report.skip(name, f"not an image or zip file ({suffix or 'no extension'}); "
                              f"expected {', '.join(IMAGE_SUFFIXES)} or .zip")
    return report


# -- COCO ---------------------------------------------------------------------------------------

def _load_json(source: str | Path | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    label = "COCO JSON" if isinstance(source, bytes) else f"COCO JSON {Path(source).name}"
    try:
        text = source if isinstance(source, bytes) else Path(source).read_bytes()
        data = json.loads(text)
    except FileNotFoundError:
        raise ValueError(f"{label}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{label}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{label}: expected an object with images, annotations and categories, "
                         f"got {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"{label}: missing or not a list: {missing} (a COCO instances file has "
                         f"'images', 'annotations' and 'categories')")
    return data


def _coco_box(ann: dict[str, Any], width: int, height: int) -> tuple[list[float] | None, str | None]:
    """(xyxy, None) for a usable COCO bbox, else (None, why)."""
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        return None, f"annotation {ann.get('id')}: bbox must be [x, y, width, height], got {bbox!r}"
    x, y, w, h = (float(v) for v in bbox)
    if not all(np.isfinite([x, y, w, h])):
        return None, f"annotation {ann.get('id')}: bbox has a non-finite number {bbox}"
    if w <= 0 or h <= 0:
        return None, f"annotation {ann.get('id')}: bbox has a negative or zero size {bbox}"
    x2, y2 = x + w, y + h
    tol = EDGE_TOLERANCE_PX
    if x < -tol or y < -tol or x2 > width + tol or y2 > height + tol:
        return None, f"annotation {ann.get('id')}: bbox {bbox} lies outside the {width}x{height} image"
    return [max(0.0, x), max(0.0, y), min(float(width), x2), min(float(height), y2)], None


def _coco_categories(data: dict[str, Any], category: str | None) -> tuple[dict[Any, Any], set[Any]]:
    """({category id: name}, the ids to import) of a COCO dict; ValueError for an unknown ``category``."""
    categories = {c.get("id"): c.get("name") for c in data["categories"] if isinstance(c, dict)}
    if category is not None and category not in categories.values():
        raise ValueError(f"category {category!r}: not in this COCO file; it has "
                         f"{sorted(str(n) for n in categories.values())[:20]}")
    return categories, {cid for cid, name in categories.items() if category is None or name == category}


def _coco_images(data: dict[str, Any], report: ImportReport) -> dict[Any, dict[str, Any]]:
    """{image id: image entry} of a COCO dict; entries without id or file name go to ``report``."""
    image_rows = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            report.skip(str(im)[:60], "image entry without id or file_name")
            continue
        image_rows[im["id"]] = im
    return image_rows


def _coco_boxes(data: dict[str, Any], image_rows: dict[Any, dict[str, Any]], categories: dict[Any, Any],
                wanted: set[Any], report: ImportReport
                ) -> tuple[dict[Any, list[tuple[list[float], str]]], dict[Any, str]]:
    """({image id: [(xyxy, class name)]} of the wanted categories, {image id: why it is unusable})."""
    per_image: dict[Any, list[tuple[list[float], str]]] = {i: [] for i in image_rows}
    bad: dict[Any, str] = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            report.skip("annotation", f"not an object: {str(ann)[:60]}")
            continue
        image_id, cat = ann.get("image_id"), ann.get("category_id")
        if image_id not in image_rows:
            report.skip(f"annotation {ann.get('id')}", f"unknown image id {image_id!r}")
            continue
        if cat not in categories:
            bad.setdefault(image_id, f"annotation {ann.get('id')}: unknown category id {cat!r}")
            continue
        if cat not in wanted:
            continue
        if ann.get("iscrowd"):
            report.skip(f"annotation {ann.get('id')}", "crowd region (not one animal), left out")
            continue
        im = image_rows[image_id]
        box, why = _coco_box(ann, int(im.get("width") or 0), int(im.get("height") or 0))
        if box is None:
            bad.setdefault(image_id, why or "bad box")
            continue
        per_image[image_id].append((box, str(categories[cat])))
    return per_image, bad


def _image_bytes(images: str | Path | dict[str, bytes], name: str) -> bytes | None:
    """The file ``name`` from a folder or from {file name: bytes}; None when it is not there."""
    if isinstance(images, dict):
        return images.get(name)
    path = Path(images) / name
    return path.read_bytes() if path.is_file() else None


def import_coco(store: Store, coco: str | Path | bytes | dict[str, Any], images: str | Path | dict[str, bytes],
                category: str | None = "cow", split: str = "unassigned",
                include_negatives: bool = False) -> ImportReport:
    """Import a COCO instances file: the images that show ``category`` (all categories with
    None), with their boxes of that category, into ``split``.

    Args:
        coco: the JSON (path, bytes or parsed dict).
        images: the folder with the files named by ``file_name``, or {file name: bytes} (an
            unpacked upload).
        include_negatives: also import listed images with no box of the category (as labeled
            negatives).

    An image is skipped (with the reason in the report) when its file is missing or not an
    image, or when any of its boxes is outside the image, has a negative size, or names an
    unknown category — half-labeled images would teach the detector that a cow is background.
    Annotations of unknown image ids and crowd regions are skipped too.

    Raises:
        ValueError: not JSON, missing keys, or ``category`` not among the file's categories.
    """
    data = _load_json(coco)
    categories, wanted = _coco_categories(data, category)
    report = ImportReport()
    image_rows = _coco_images(data, report)
    per_image, bad = _coco_boxes(data, image_rows, categories, wanted, report)
    for class_name in sorted({name for boxes in per_image.values() for _, name in boxes}):
        store.add_class(class_name)
    vocab = store.class_names()
    for image_id, im in image_rows.items():
        name = str(im["file_name"])
        if image_id in bad:
            report.skip(name, bad[image_id])
            continue
        boxes = per_image[image_id]
        if not boxes and not include_negatives:
            continue
        if _unsafe_member(name):
            report.skip(name, f"unsafe file name: {_unsafe_member(name)}")
            continue
        content = _image_bytes(images, name)
        if content is None:
            report.skip(name, "image file not found")
            continue
        dets = Detections.from_names(np.array([b for b, _ in boxes], np.float64).reshape(-1, 4),
                                     [n for _, n in boxes], vocab)
        report.store(store, name, content, split, dets)
    return report


def export_coco(store: Store, split: str | None = None) -> dict[str, Any]:
    """The labeled images of ``split`` (all splits when None) as a COCO instances dict.

    Image ids are the store's ids, category ids number the store's classes from 1 ('cow' = 1),
    boxes are [x, y, width, height] pixels rounded to 0.01 px (COCO's own precision), and
    ``area`` is the box area. pycocotools' COCO() reads it as is.
    """
    classes = store.classes()
    category_id = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for split_name in ([split] if split else ["train", "val", "test", "unassigned"]):
        for sample in store.dataset(split_name):
            record = store.image(sample.image_id)
            images.append({"id": record.id, "file_name": f"{record.id:06d}{record.path.suffix}",
                           "original_name": record.original_name, "width": record.width,
                           "height": record.height, "split": record.split})
            for xyxy, name, _ in sample.boxes:
                x1, y1, x2, y2 = (float(v) for v in xyxy)
                w, h = round(x2 - x1, 2), round(y2 - y1, 2)
                annotations.append({"id": len(annotations) + 1, "image_id": record.id,
                                    "category_id": category_id[name], "bbox": [round(x1, 2), round(y1, 2), w, h],
                                    "area": round(w * h, 2), "iscrowd": 0})
    return {"info": {"description": "exported by cowdetect", "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "animal"} for name, i in category_id.items()]}


def coco_results(store: Store, predictions: Sequence[Detections], image_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Detections in COCO results format — image_id, category_id, bbox [x, y, w, h] px, score — with
    the ids :func:`export_coco` writes, so pycocotools' ``COCO.loadRes`` can re-check our numbers.
    Classes the dataset does not have (a COCO model's 'person') are left out."""
    classes = store.classes()
    category_id = {name: i + 1 for i, name in enumerate(classes)}
    out = []
    for image_id, dets in zip(image_ids, predictions):
        kept = dets.with_class_names(store.class_names())
        scores = kept.score if kept.score is not None else np.ones(len(kept), np.float32)
        for (x1, y1, x2, y2), name, score in zip(kept.xyxy.astype(float), kept.names, scores):
            # Unrounded: the file holds exactly the float32 boxes and scores that were evaluated
            # (rounding to COCO's 0.01 px moved a near-zero mAP by more than 1e-6).
            out.append({"image_id": int(image_id), "category_id": category_id[name],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return out


def write_coco(store: Store, path: str | Path, split: str | None = None, images_dir: str | Path | None = None
               ) -> dict[str, int]:
    """Write :func:`export_coco` to ``path`` (and the image files, named as in the JSON, to
    ``images_dir`` when given). Returns counts of images and annotations."""
    coco = export_coco(store, split)
    atomic_write_bytes(path, json.dumps(coco, indent=1).encode())
    if images_dir is not None:
        folder = Path(images_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for im in coco["images"]:
            atomic_write_bytes(folder / im["file_name"], store.image(im["id"]).path.read_bytes())
    return {"images": len(coco["images"]), "annotations": len(coco["annotations"])}


# -- YOLO ---------------------------------------------------------------------------------------

def export_yolo(store: Store, out_dir: str | Path, splits: Sequence[str] = ("train", "val", "test"),
                with_path: bool = True) -> dict[str, int]:
    """Write the labeled images as an Ultralytics YOLO dataset::

        out_dir/data.yaml                 path, train/val/test image folders, names {0: cow, ...}
        out_dir/images/<split>/<id>.jpg
        out_dir/labels/<split>/<id>.txt   one line per box: class cx cy w h (0-1, of the image size)

    ``with_path=False`` leaves ``path`` out of data.yaml, so Ultralytics uses the folder the
    yaml lies in (for a zip that is unpacked elsewhere). Returns the images written per split.
    """
    out = Path(out_dir)
    classes = store.classes()
    index = {name: i for i, name in enumerate(classes)}
    counts = {}
    for split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        n = 0
        for sample in store.dataset(split):
            record = store.image(sample.image_id)
            stem = f"{record.id:06d}"
            atomic_write_bytes(out / "images" / split / f"{stem}{record.path.suffix}", record.path.read_bytes())
            lines = []
            for xyxy, name, _ in sample.boxes:
                x1, y1, x2, y2 = (float(v) for v in xyxy)
                lines.append(f"{index[name]} {(x1 + x2) / 2 / record.width:.6f} {(y1 + y2) / 2 / record.height:.6f} "
                             f"{(x2 - x1) / record.width:.6f} {(y2 - y1) / record.height:.6f}")
            atomic_write_bytes(out / "labels" / split / f"{stem}.txt", ("\n".join(lines) + "\n" if lines else "").encode())
            n += 1
        counts[split] = n
    config = {**({"path": str(out.resolve())} if with_path else {}), **{s: f"images/{s}" for s in splits},
              "names": {i: name for i, name in enumerate(classes)}}
    atomic_write(out / "data.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False)))
    return counts


# -- Deep Lake ----------------------------------------------------------------------------------

def import_deeplake(store: Store, source: str = DEEPLAKE_COCO, category: str | None = "cow", limit: int | None = 100,
                    split: str = "unassigned", token: str | None = None) -> ImportReport:
    """Import images showing ``category`` from a Deep Lake dataset with COCO's columns:
    ``images`` (RGB), ``boxes`` ([x, y, width, height] pixels) and ``categories`` (class
    labels whose names are in the column's ``class_names`` metadata) — the layout of
    Activeloop's ``hub://activeloop/coco-train``. At most ``limit`` images are imported.

    Raises:
        ValueError: the dataset cannot be opened (offline, wrong path, no access: the message
            says which, at once — deeplake 4 does not retry), lacks those columns, or does not
            have ``category``.
    """
    import deeplake

    try:
        ds = deeplake.open_read_only(source, token=token) if token else deeplake.open_read_only(source)
    except Exception as exc:  # deeplake raises its own error types (HTTPRequestFailedError, ...)
        hint = " (no internet connection, or the server is unreachable)" if source.startswith(("hub://", "al://")) \
            and "fetch" in str(exc).lower() else ""
        raise ValueError(f"Deep Lake dataset {source}: cannot be opened{hint}: {type(exc).__name__}: "
                         f"{str(exc)[:300]}") from None
    columns = {c.name for c in ds.schema.columns}
    missing = [c for c in ("images", "boxes", "categories") if c not in columns]
    if missing:
        raise ValueError(f"Deep Lake dataset {source}: missing columns {missing}; it has {sorted(columns)}")
    names = list(ds["categories"].metadata["class_names"])
    if category is not None and category not in names:
        raise ValueError(f"category {category!r}: not in the dataset's class names ({names[:20]}...)")
    wanted = names.index(category) if category is not None else None
    report = ImportReport()
    for class_name in ([category] if category is not None else names):
        store.add_class(class_name)
    vocab = store.class_names()
    for row in range(len(ds)):
        if limit is not None and report.added + report.already_present >= limit:
            break
        labels = np.asarray(ds["categories"][row]).reshape(-1)
        keep = labels == wanted if wanted is not None else np.ones(len(labels), bool)
        if not keep.any():
            continue
        label = f"{source}[{row}]"
        ltwh = np.asarray(ds["boxes"][row], np.float64).reshape(-1, 4)[keep]
        rgb = np.asarray(ds["images"][row])
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        height, width = rgb.shape[:2]
        xyxy = np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)
        if (ltwh[:, 2:] <= 0).any() or (xyxy < -EDGE_TOLERANCE_PX).any() or \
                (xyxy[:, 2] > width + EDGE_TOLERANCE_PX).any() or (xyxy[:, 3] > height + EDGE_TOLERANCE_PX).any():
            report.skip(label, f"a box lies outside the {width}x{height} image or has no size")
            continue
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
        class_names = [names[int(i)] for i in labels[keep]]
        report.store(store, label, rgb[..., :3].astype(np.uint8), split, Detections.from_names(xyxy, class_names, vocab),
                     file_name=f"deeplake-{row:07d}.png")
    return report


def yolo_zip(store: Store) -> tuple[bytes, dict[str, int]]:
    """:func:`export_yolo` as one zip in memory (data.yaml without ``path``, so it works wherever it
    is unpacked), built in a scratch folder inside the data folder. Returns (zip bytes, images per split)."""
    import tempfile

    scratch = store.inside("tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        root = Path(tmp) / "yolo"
        written = export_yolo(store, root, with_path=False)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue(), written
