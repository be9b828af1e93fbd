"""``python -m sksvd``: the same as the ``sksvd`` command (see :mod:`sksvd.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
