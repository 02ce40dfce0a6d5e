"""ccflux: exact, signed, spooled per-turn Claude Code usage reports.

This module is imported on every hook run, so it stays empty but for the
version: the no-news path must not pay for anything it does not use.
"""

__version__ = "0.1.0"
