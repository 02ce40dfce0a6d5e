"""The no-news cache: what the last commit consumed of a session's transcripts.

A Stop with nothing new is the hot path of every turn, and it must cost
little more than starting Python: it compares file sizes against this small
per-session file using ``os`` alone. The hint is only a cache — the truth is
the cursors in state.db — so a stale or missing hint just means one run takes
the slow path and finds nothing.
"""

from __future__ import annotations

import os
import zlib

from .paths import FILE_MODE, ensure_dir, in_state

HINTS_DIR = "hints"


class Hint:
    """Bytes consumed per transcript path, and the crc32 of the last final
    message a commit saw (0: none). A plain class: ``typing`` costs too much here."""

    __slots__ = ("offsets", "final_crc")

    def __init__(self, offsets: dict[str, int], final_crc: int) -> None:
        self.offsets = offsets
        self.final_crc = final_crc


def text_crc(text: str) -> int:
    return zlib.crc32(text.strip().encode("utf-8", "replace")) if text.strip() else 0


def read(session_id: str) -> Hint:
    try:
        fd = os.open(os.path.join(in_state(HINTS_DIR), session_id), os.O_RDONLY)
    except OSError:
        return Hint({}, 0)
    try:
        raw = os.read(fd, 1 << 20).decode("utf-8", "replace")
    finally:
        os.close(fd)
    lines = raw.split("\n")
    offsets: dict[str, int] = {}
    try:
        crc = int(lines[0])
        for line in lines[1:]:
            if line:
                size, _, path = line.partition("\t")
                offsets[path] = int(size)
    except ValueError:
        return Hint({}, 0)
    return Hint(offsets, crc)


def write(session_id: str, hint: Hint) -> None:
    body = [str(hint.final_crc)] + [f"{size}\t{path}" for path, size in hint.offsets.items() if "\n" not in path]
    directory = ensure_dir(in_state(HINTS_DIR))
    tmp = os.path.join(directory, f".{session_id}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, ("\n".join(body) + "\n").encode("utf-8", "replace"))
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, session_id))


def has_news(files: list[str], hint: Hint) -> bool:
    """True when any transcript differs in size from what was consumed."""
    for path in files:
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        if size != hint.offsets.get(path, -1):
            return True
    return False


def prune(older_than: float) -> None:
    """Drop hints of sessions untouched since ``older_than`` (epoch): a cache only."""
    directory = in_state(HINTS_DIR)
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.stat().st_mtime < older_than:
                        os.unlink(entry.path)
                except OSError:
                    continue
    except OSError:
        pass
