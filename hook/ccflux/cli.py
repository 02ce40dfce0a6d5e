"""`ccflux` command line: `hook` stays lean; everything else goes to commands.py.

`ccflux hook` runs after every turn, so this module imports nothing for it
beyond the hook itself (no argparse, no json).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["hook"]:
        from .hook import main as hook_main

        return hook_main()
    if args[:1] in (["--version"], ["version"]):
        from . import __version__

        print(f"ccflux {__version__}")
        return 0
    from .commands import main as commands_main

    return commands_main(args)


if __name__ == "__main__":
    sys.exit(main())
