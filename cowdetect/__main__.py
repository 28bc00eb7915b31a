"""``python -m cowdetect``: see :mod:`cowdetect.cli`."""

import sys

from .cli import main

sys.exit(main())
