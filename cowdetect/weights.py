"""Where pretrained weights come from: torchvision's COCO weights, cached by torch.

Online, the file is downloaded once into torch's cache (``$TORCH_HOME/hub/checkpoints``);
after that, and on machines without internet where the file was copied by hand, it is
read from there. Offline with no cached file, :class:`WeightsUnavailableError` says which
file to put where.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch.hub import get_dir, load_state_dict_from_url


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights are neither cached nor downloadable."""


def cache_path(url: str) -> Path:
    """The file torch.hub uses for ``url`` (``<TORCH_HOME>/hub/checkpoints/<file name>``)."""
    return Path(get_dir()) / "checkpoints" / os.path.basename(url)


def load_pretrained(weights_enum: Any) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights enum member (e.g. ``..._Weights.COCO_V1``).

    Reads the cached file when present, else downloads it (hash-checked) into the cache.

    Raises:
        WeightsUnavailableError: offline (or the server failed) and no cached file.
    """
    url = weights_enum.url
    target = cache_path(url)
    if target.is_file():
        return torch.load(target, map_location="cpu", weights_only=True)
    try:
        return load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True,
                                        weights_only=True)
    except (URLError, OSError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            f"Could not download the COCO weights {weights_enum} ({exc}). Without internet, "
            f"download {url} on a machine that has it and copy the file to {target} "
            f"(or set TORCH_HOME to a folder whose hub/checkpoints holds it)."
        ) from exc
