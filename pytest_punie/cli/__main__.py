"""``python -m pytest_punie.cli``: the ``punie`` command without its script on PATH."""

import sys

from pytest_punie.cli import main

sys.exit(main())
