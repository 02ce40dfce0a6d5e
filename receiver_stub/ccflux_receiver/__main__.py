"""``python -m ccflux_receiver``: the same as the ``ccflux-receiver`` console script."""

import sys

from .cli import main

sys.exit(main())
