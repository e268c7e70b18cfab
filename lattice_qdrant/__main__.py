"""``python -m lattice_qdrant``: the same as the ``lattice-qdrant`` command."""

import sys

from .cli import main

sys.exit(main())
