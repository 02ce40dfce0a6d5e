"""Transcripts written the way Claude Code writes them (CLAUDE_CODE.md): one
line per content block, each repeating the response's full usage."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Iterable

_ids = itertools.count(1)


def usage(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> dict:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }


def assistant_lines(
    u: dict,
    blocks: Iterable[str] = ("text",),
    model: str = "claude-sonnet-4-5",
    text: str = "done",
    msg_id: str | None = None,
    request_id: str | None = None,
    timestamp: str = "2026-11-23T10:00:00.000Z",
    sidechain: bool = False,
) -> list[str]:
    n = next(_ids)
    msg_id = msg_id or f"msg_{n:06d}"
    request_id = request_id or f"req_{n:06d}"
    out = []
    for i, kind in enumerate(blocks):
        if kind == "text":
            content = [{"type": "text", "text": text}]
        elif kind == "thinking":
            content = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
        else:
            content = [{"type": "tool_use", "id": f"toolu_{n}_{i}", "name": "Bash", "input": {"command": "ls"}}]
        out.append(_dumps({
            "parentUuid": None, "isSidechain": sidechain,
            "message": {"model": model, "id": msg_id, "type": "message", "role": "assistant",
                        "content": content, "stop_reason": None, "usage": u},
            "requestId": request_id, "type": "assistant", "uuid": f"uuid-{n}-{i}", "timestamp": timestamp,
        }))
    return out


def user_line(text: str = "hi", timestamp: str = "2026-11-23T09:59:00.000Z") -> str:
    return _dumps({"type": "user", "timestamp": timestamp, "uuid": f"u-{next(_ids)}",
                       "message": {"role": "user", "content": text}})


def _dumps(doc: dict) -> str:
    """Compact, as Claude Code (JSON.stringify) writes."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def append(path: Path, lines: Iterable[str], newline_at_end: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "\n".join(lines)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(data + ("\n" if newline_at_end else ""))


def hook_event(name: str, session_id: str, transcript: Path, **extra: str) -> bytes:
    doc = {"hook_event_name": name, "session_id": session_id,
           "transcript_path": str(transcript), "cwd": os.getcwd(), **extra}
    return json.dumps(doc).encode()
