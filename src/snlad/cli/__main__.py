"""``python -m snlad.cli ...``: the ``snlad`` command (``torchrun ... -m snlad.cli`` for data-parallel training)."""

import sys

from snlad.cli import main

sys.exit(main())
