"""Getting labeled images in and out: image files and zips, COCO JSON, YOLO, Deep Lake.

An import either raises ValueError and stores nothing, or stores what it could in ONE
transaction and returns an :class:`ImportReport` saying what was added, what was already there
and what was skipped, and why. Whole-file problems (not JSON, wrong types, duplicate ids) are
refused before anything is read; per-image problems (a missing or corrupt file, a box outside
its image, a picture too small to train on) skip that image. Nothing already stored is
changed: an image that is already in the store (same bytes) keeps its boxes. Boxes are xyxy
pixels inside the store; COCO files use [x, y, width, height] pixels, YOLO files normalised
centre, width and height.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import reprlib
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import yaml

from .detections import Detections
from .files import atomic_write, atomic_write_bytes
from .images import MAX_PIXELS, check_file_name, short_name
from .store import Store
from .store.images import ImageBatch, check_class_name

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
        self.skipped.append((short_name(name, 120), reason))

    @property
    def nothing_added(self) -> bool:
        """No image was added (images found already stored do not count; see ``already_present``)."""
        return self.added == 0

    def summary(self) -> str:
        """One line for a page or the CLI."""
        text = f"{self.added} images added ({self.boxes} boxes), {self.already_present} already stored"
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


class _Import:
    """One import into a store: images staged one by one in ``batch`` (one the store refuses is
    skipped in ``report`` with the store's reason), then stored all together by :meth:`finish`."""

    def __init__(self, batch: ImageBatch, report: ImportReport) -> None:
        self.batch, self.report = batch, report
        self.staged: list[tuple[str, int]] = []  # (source name, its boxes), in the batch's order

    def stage(self, name: str, content: Any, boxes: Detections | None = None, file_name: str | None = None,
              expected_size: tuple[int, int] | None = None) -> None:
        """Check and stage one image (bytes or RGB array; boxes xyxy px)."""
        try:
            file_name = file_name or PurePosixPath(name).name
            check_file_name(file_name, "image name")  # a name no file system allows is no file's name
            self.batch.add(content, file_name, boxes, expected_size=expected_size)
        except ValueError as exc:
            self.report.skip(name, str(exc))
            return
        self.staged.append((name, len(boxes) if boxes is not None else 0))

    def finish(self, what: str) -> ImportReport:
        """Store every staged image in one transaction with one activity line; count them in the report."""
        note = f"{len(self.report.skipped)} skipped" if self.report.skipped else ""
        results = self.batch.commit("import", what, note)
        for (name, n_boxes), (record, created) in zip(self.staged, results):
            self.report.image_ids[name] = record.id
            if created:
                self.report.added += 1
                self.report.boxes += n_boxes
            else:
                self.report.already_present += 1
        return self.report


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
    """Store uploaded image files (JPEG, PNG, WEBP, BMP) and zips of them, unlabeled, in ``split``.

    Every file is checked first, then all are stored in one transaction (an unexpected error
    stores none). Files whose name or bytes are not one of those formats, corrupt or huge
    images, images too small or too thin to train on, names too long for a file system, unsafe
    zip entries and zip bombs are skipped with a reason; identical images are stored once.
    """
    report = ImportReport()
    with store.image_batch(split) as batch:
        todo = _Import(batch, report)
        count = 0
        for name, data in files:
            count += 1
            suffix = PurePosixPath(name).suffix.lower()
            if suffix == ".zip":
                for inner, content in zip_entries(data, name, report):
                    todo.stage(f"{name}/{inner}", content)
            elif suffix in IMAGE_SUFFIXES:
                todo.stage(name, data)
            else:
                report.skip(name, f"not an image or zip file ({short_name(suffix, 20) or 'no extension'}); "
                                  f"expected {', '.join(IMAGE_SUFFIXES)} or .zip")
        return todo.finish(f"{count} uploaded files")


# -- COCO ---------------------------------------------------------------------------------------

# How a value is shown in a message: short, whatever it is (a 10 MB list, a 100-level nest).
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 40, 40, 6, 4, 2
_ENTRIES = {"images": "image", "annotations": "annotation", "categories": "category"}


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int) and value.bit_length() > 64:  # repr of a 5000-digit int raises in Python 3.11+
        return f"a {value.bit_length()}-bit number"
    if isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value[:_REPR.maxlist]):
        more = ", ..." if len(value) > _REPR.maxlist else ""
        return "[" + ", ".join(_show(v) for v in value[:_REPR.maxlist]) + more + "]"  # a bbox: [1, Infinity, ...]
    return _REPR.repr(value)


def _is_whole(value: Any, low: int = 0) -> bool:
    """A whole number >= ``low`` — not a bool (JSON true is no id), not 7.0, not '7'."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or math.isfinite(value)


def _field(entry: dict[str, Any], key: str, ok: Callable[[Any], bool], expected: str, where: str,
           required: bool = True) -> Any:
    """``entry[key]`` when ``ok`` says it is ``expected``; ValueError naming ``where`` and ``key`` otherwise."""
    if key not in entry:
        if required:
            raise ValueError(f"{where}: {key} is missing (expected {expected})")
        return None
    if not ok(entry[key]):
        raise ValueError(f"{where}: {key} must be {expected}, got {_show(entry[key])}")
    return entry[key]


def _entry(entries: list[Any], index: int, kind: str, label: str) -> tuple[dict[str, Any], str]:
    """(the entry, 'COCO JSON: image 7') for entry ``index`` of ``kind`` ('images', ...), its id checked."""
    entry = entries[index]
    if not isinstance(entry, dict):
        raise ValueError(f"{label}: {kind}[{index}] must be an object, got {_show(entry)}")
    entry_id = _field(entry, "id", _is_whole, "a whole number (0 or more)", f"{label}: {kind}[{index}]")
    return entry, f"{label}: {_ENTRIES[kind]} {entry_id}"


def _check_image(images: list[Any], index: int, label: str) -> None:
    im, where = _entry(images, index, "images", label)
    name = _field(im, "file_name", lambda v: isinstance(v, str) and bool(v.strip()), "a file name", where)
    check_file_name(name, f"{where}: file_name")
    width = _field(im, "width", lambda v: _is_whole(v, 1), "a positive whole number", where)
    height = _field(im, "height", lambda v: _is_whole(v, 1), "a positive whole number", where)
    if width * height > MAX_PIXELS:
        raise ValueError(f"{where}: {_show(width)}x{_show(height)} px is more than the {MAX_PIXELS / 1e6:.0f} "
                         f"megapixels cowdetect accepts")


def _check_annotation(annotations: list[Any], index: int, label: str) -> None:
    ann, where = _entry(annotations, index, "annotations", label)
    _field(ann, "image_id", _is_whole, "a whole number (an image's id)", where)
    _field(ann, "category_id", _is_whole, "a whole number (a category's id)", where)
    _field(ann, "bbox", lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v),
           "[x, y, width, height] (4 finite numbers)", where)
    _field(ann, "iscrowd", lambda v: _is_whole(v) and v in (0, 1), "0 or 1", where, required=False)


def _class_name_ok(value: Any) -> bool:
    try:
        check_class_name(value)
    except ValueError:
        return False
    return True


def _check_category(categories: list[Any], index: int, label: str) -> None:
    cat, where = _entry(categories, index, "categories", label)
    _field(cat, "name", _class_name_ok, "a class name (1 to 64 printable characters)", where)


def _refuse_duplicates(data: dict[str, Any], label: str) -> None:
    """ValueError naming ids used by two entries (their boxes would land on the wrong picture or
    class), and file names listed twice."""
    for kind, what in _ENTRIES.items():
        counts = Counter(entry["id"] for entry in data[kind])
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(f"{label}: {what} ids used more than once: {_show(repeated)}; "
                             f"each {what} needs its own id")
    counts = Counter(im["file_name"] for im in data["images"])
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise ValueError(f"{label}: file_name listed by more than one image: {_show(repeated)}; list each image once")


def _non_finite(value: Any) -> tuple[str, float] | None:
    """(path, value) of the first NaN or infinite number inside ``value``, or None (no recursion:
    the nesting may be deep)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, item
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def _refuse_non_finite(data: dict[str, Any], label: str) -> None:
    """ValueError naming the first NaN or Infinity (Python's json reads them; JSON has neither)."""
    for key, value in data.items():
        entries = [(f"{_ENTRIES[key]} {e['id']}: ", e) for e in value] if key in _ENTRIES else [("", {key: value})]
        for where, entry in entries:
            found = _non_finite(entry)
            if found is not None:
                raise ValueError(f"{label}: {where}{found[0]} is {_show(found[1])}; JSON has no NaN or Infinity")


def _check_coco(data: Any, label: str) -> None:
    """ValueError, naming the entry and field, unless ``data`` is a COCO instances dict whose every
    value cowdetect reads has the right type, with no id used twice. Fields cowdetect does not
    read (area, segmentation, info, ...) are not checked, except for NaN / Infinity in a file."""
    if not isinstance(data, dict):
        raise ValueError(f"{label}: expected an object with images, annotations and categories, "
                         f"got {type(data).__name__}")
    missing = [k for k in _ENTRIES if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"{label}: missing or not a list: {missing} (a COCO instances file has "
                         f"'images', 'annotations' and 'categories')")
    for kind, check in (("images", _check_image), ("annotations", _check_annotation),
                        ("categories", _check_category)):
        for index in range(len(data[kind])):
            check(data[kind], index, label)
    _refuse_duplicates(data, label)


def _parse_json(text: bytes, label: str) -> dict[str, Any]:
    """The parsed JSON, refusing NaN / Infinity (named by where they are) and absurd nesting."""
    non_finite: list[str] = []

    def number(token: str) -> float:
        value = float(token)  # 1e400 reads as inf: as much a non-number as Infinity
        if not math.isfinite(value):
            non_finite.append(token)
        return value

    def constant(token: str) -> float:
        non_finite.append(token)
        return float(token.replace("Infinity", "inf"))

    try:
        data = json.loads(text, parse_float=number, parse_constant=constant)
    except RecursionError:
        raise ValueError(f"{label}: not a COCO file (lists or objects nested thousands of levels deep)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of > 4300 digits
        why = "a number of more than 4300 digits" if "integer string conversion" in str(exc) else str(exc)
        raise ValueError(f"{label}: not JSON ({short_name(why, 200)})") from None
    _check_coco(data, label)
    if non_finite:
        _refuse_non_finite(data, label)
    return data


def _load_json(source: str | Path | bytes | dict[str, Any]) -> dict[str, Any]:
    """The checked COCO dict of a path, bytes or dict (see :func:`_check_coco`); ValueError otherwise."""
    if isinstance(source, dict):
        _check_coco(source, "COCO JSON")
        return source
    if isinstance(source, (bytes, bytearray)):
        return _parse_json(bytes(source), "COCO JSON")
    label = f"COCO JSON {short_name(Path(source).name)}"
    try:
        text = Path(source).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{label}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    return _parse_json(text, label)


def _coco_box(ann: dict[str, Any], width: int, height: int) -> tuple[list[float] | None, str | None]:
    """(xyxy, None) for a usable COCO bbox (types already checked), else (None, why)."""
    bbox = ann["bbox"]
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f"annotation {ann['id']}: bbox has a negative or zero size {bbox}"
    x2, y2 = x + w, y + h
    tol = EDGE_TOLERANCE_PX
    if x < -tol or y < -tol or x2 > width + tol or y2 > height + tol:
        return None, f"annotation {ann['id']}: bbox {bbox} lies outside the {width}x{height} image"
    return [max(0.0, x), max(0.0, y), min(float(width), x2), min(float(height), y2)], None


def _coco_categories(data: dict[str, Any], category: str | None) -> tuple[dict[int, str], set[int]]:
    """({category id: name}, the ids to import) of a COCO dict; ValueError for an unknown ``category``."""
    categories = {int(c["id"]): c["name"] for c in data["categories"]}
    if category is not None and category not in categories.values():
        raise ValueError(f"category {category!r}: not in this COCO file; it has "
                         f"{sorted(short_name(n, 40) for n in categories.values())[:20]}")
    return categories, {cid for cid, name in categories.items() if category is None or name == category}


def _coco_boxes(data: dict[str, Any], image_rows: dict[int, dict[str, Any]], categories: dict[int, str],
                wanted: set[int], report: ImportReport
                ) -> tuple[dict[int, list[tuple[list[float], str]]], dict[int, str]]:
    """({image id: [(xyxy, class name)]} of the wanted categories, {image id: why it is unusable})."""
    per_image: dict[int, list[tuple[list[float], str]]] = {i: [] for i in image_rows}
    bad: dict[int, str] = {}
    for ann in data["annotations"]:
        image_id, cat = ann["image_id"], ann["category_id"]
        if image_id not in image_rows:
            report.skip(f"annotation {ann['id']}", f"unknown image id {image_id!r}")
            continue
        if cat not in categories:
            bad.setdefault(image_id, f"annotation {ann['id']}: unknown category id {cat!r}")
            continue
        if cat not in wanted:
            continue
        if ann.get("iscrowd"):
            report.skip(f"annotation {ann['id']}", "crowd region (not one animal), left out")
            continue
        im = image_rows[image_id]
        box, why = _coco_box(ann, im["width"], im["height"])
        if box is None:
            bad.setdefault(image_id, why or "bad box")
            continue
        per_image[image_id].append((box, str(categories[cat])))
    return per_image, bad


def _image_bytes(images: str | Path | dict[str, bytes], name: str) -> bytes:
    """The file ``name`` from a folder or from {file name: bytes}; ValueError when it is not there."""
    if isinstance(images, dict):
        content = images.get(name)  # .get: a lazy mapping (cowdetect.import_roots.FolderImages) reads here
        if content is None:
            raise ValueError("image file not found")
        return content
    try:
        return (Path(images) / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ValueError("image file not found") from None
    except OSError as exc:
        raise ValueError(f"image file cannot be read ({exc.strerror or exc})") from None


def _stage_coco(todo: _Import, images: str | Path | dict[str, bytes], image_rows: dict[int, dict[str, Any]],
                per_image: dict[int, list[tuple[list[float], str]]], bad: dict[int, str],
                include_negatives: bool) -> None:
    """Stage each listed image with its boxes, or skip it in the report with the reason."""
    for class_name in sorted({name for boxes in per_image.values() for _, name in boxes}):
        todo.batch.add_class(class_name)
    vocab = todo.batch.class_names()
    for image_id, im in image_rows.items():
        name = im["file_name"]
        boxes = per_image[image_id]
        if image_id in bad or (not boxes and not include_negatives):
            if image_id in bad:
                todo.report.skip(name, bad[image_id])
            continue
        if _unsafe_member(name):
            todo.report.skip(name, f"unsafe file name: {_unsafe_member(name)}")
            continue
        try:
            content = _image_bytes(images, name)
        except ValueError as exc:
            todo.report.skip(name, str(exc))
            continue
        dets = Detections.from_names(np.array([b for b, _ in boxes], np.float64).reshape(-1, 4),
                                     [n for _, n in boxes], vocab)
        todo.stage(name, content, dets, expected_size=(im["width"], im["height"]))


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

    The whole file is checked before any image is read, and refused (ValueError, nothing stored)
    when it is not JSON, holds NaN / Infinity or absurd nesting, a value cowdetect reads has the
    wrong type (the message names the image, annotation or category id and the field), an id is
    used twice, or an image is listed twice. Then an image is skipped (with the reason in the
    report) when its file is missing, not a JPEG / PNG / WEBP / BMP, too small or too thin to train
    on, or **not the width x height the file says** (its boxes would land in the wrong place;
    check for EXIF rotation), or when any of its boxes is outside the image, has a negative size,
    or names an unknown category — half-labeled images would teach the detector that a cow is
    background. Annotations of unknown image ids and crowd regions are skipped too. What is
    left is stored in one transaction.

    Raises:
        ValueError: the file problems above, or ``category`` not among the file's categories.
    """
    data = _load_json(coco)
    categories, wanted = _coco_categories(data, category)
    report = ImportReport()
    image_rows = {im["id"]: im for im in data["images"]}
    per_image, bad = _coco_boxes(data, image_rows, categories, wanted, report)
    what = "COCO JSON" if isinstance(coco, (bytes, bytearray, dict)) else f"COCO {short_name(Path(coco).name)}"
    with store.image_batch(split) as batch:
        todo = _Import(batch, report)
        _stage_coco(todo, images, image_rows, per_image, bad, include_negatives)
        return todo.finish(what)


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

def _open_deeplake(source: str, token: str | None) -> Any:
    """The Deep Lake dataset at ``source``, read-only, with COCO's columns; ValueError otherwise."""
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
    return ds


def _deeplake_row(ds: Any, row: int, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """(RGB uint8 image, its kept boxes as xyxy px, clipped) of a row, or why it cannot be used."""
    ltwh = np.asarray(ds["boxes"][row], np.float64).reshape(-1, 4)[keep]
    rgb = np.asarray(ds["images"][row])
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    height, width = rgb.shape[:2]
    xyxy = np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)
    if not np.isfinite(xyxy).all() or (ltwh[:, 2:] <= 0).any() or (xyxy < -EDGE_TOLERANCE_PX).any() or \
            (xyxy[:, 2] > width + EDGE_TOLERANCE_PX).any() or (xyxy[:, 3] > height + EDGE_TOLERANCE_PX).any():
        return f"a box lies outside the {width}x{height} image or has no size"
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
    return rgb[..., :3].astype(np.uint8), xyxy


def import_deeplake(store: Store, source: str = DEEPLAKE_COCO, category: str | None = "cow", limit: int | None = 100,
                    split: str = "unassigned", token: str | None = None) -> ImportReport:
    """Import images showing ``category`` from a Deep Lake dataset with COCO's columns:
    ``images`` (RGB), ``boxes`` ([x, y, width, height] pixels) and ``categories`` (class
    labels whose names are in the column's ``class_names`` metadata) — the layout of
    Activeloop's ``hub://activeloop/coco-train``. At most ``limit`` images are imported, all
    in one transaction at the end (an error on the way stores none). Rows whose boxes leave the
    image, and images the store refuses (too small, too thin), are skipped with the reason.

    Raises:
        ValueError: the dataset cannot be opened (offline, wrong path, no access: the message
            says which, at once — deeplake 4 does not retry), lacks those columns, or does not
            have ``category``.
    """
    ds = _open_deeplake(source, token)
    names = list(ds["categories"].metadata["class_names"])
    if category is not None and category not in names:
        raise ValueError(f"category {category!r}: not in the dataset's class names ({names[:20]}...)")
    wanted = names.index(category) if category is not None else None
    report = ImportReport()
    with store.image_batch(split) as batch:
        for class_name in ([category] if category is not None else names):
            batch.add_class(class_name)
        vocab, todo = batch.class_names(), _Import(batch, report)
        for row in range(len(ds)):
            if limit is not None and len(batch) >= limit:
                break
            labels = np.asarray(ds["categories"][row]).reshape(-1)
            keep = labels == wanted if wanted is not None else np.ones(len(labels), bool)
            if not keep.any():
                continue
            label, usable = f"{source}[{row}]", _deeplake_row(ds, row, keep)
            if isinstance(usable, str):
                report.skip(label, usable)
                continue
            dets = Detections.from_names(usable[1], [names[int(i)] for i in labels[keep]], vocab)
            todo.stage(label, usable[0], dets, file_name=f"deeplake-{row:07d}.png")
        return todo.finish(f"Deep Lake {short_name(source)}")


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
