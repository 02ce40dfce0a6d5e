"""Entry point of the frozen ccflux (build/ccflux.spec): the same `main` as the console script."""

import sys

from ccflux.cli import main

if __name__ == "__main__":
    sys.exit(main())
