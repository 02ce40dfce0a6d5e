"""A fake Anthropic Messages API for driving the real Claude Code client offline.

It answers ``POST /v1/messages`` with server-sent events the way the real API
streams them, and records exactly which usage it handed out: that record is the
truth the e2e tests compare ccflux's receiver totals against.

Behaviour is scripted by keywords in the user's prompt and decided from the
conversation history, so every conversation ends:

    (no keyword)   one plain text reply
    E2E_TOOL       thinking + text + tool_use(Bash), then a final reply
    E2E_LOOP<n>    n Bash calls in a row (one per API call), then a final reply
    E2E_MULTITEXT  one final message: thinking + two text blocks with surrounding whitespace
    E2E_AGENT1     one Agent tool call; the subagent runs Bash, then answers
    E2E_AGENT2     two Agent tool calls in one message (parallel subagents)
    E2E_OVERLOAD   the first API call of the turn gets 529 overloaded_error once
    E2E_FAIL<code> every API call of the turn fails with HTTP <code> (default 400), no retry hint
    E2E_HUGE       the turn's first response reports ~990k input tokens (next turn auto-compacts)
    E2E_SLOW<ms>   stream the reply slowly (pause <ms> between events)

Usage numbers come from a global response counter, so that every response's
four numbers differ from every other response's: a double count, a miss or a
swap of two fields always changes a total.

Run it alone for manual experiments: ``python tests/e2e/fake_api.py [port]``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SUBAGENT_MARK = "cc_is_subagent=true"
SUBTASK_MARK = "E2E_SUBTASK"
COMPACT_MARK = "CRITICAL: Respond with TEXT ONLY"  # Claude Code 2.1.330's compaction prompt


@dataclass
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @staticmethod
    def for_response(n: int) -> "Usage":
        # Distinct per response and per field (every field moves by a different
        # step, input > output always), yet small: a context past the model's
        # window makes Claude Code compact the conversation, a side effect no
        # scenario wants by accident (n = 1000 still uses < 25k tokens).
        return Usage(
            input_tokens=3 * n + 101,
            output_tokens=2 * n + 17,
            cache_read_tokens=13 * n + 5003,
            cache_write_tokens=5 * n + 307,
        )

    def add(self, other: "Usage") -> "Usage":
        return Usage(*(a + b for a, b in zip(astuple_usage(self), astuple_usage(other))))


def astuple_usage(u: Usage) -> tuple[int, int, int, int]:
    return (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)


ZERO = Usage(0, 0, 0, 0)


@dataclass
class Record:
    """One successful API response (what Claude Code was billed for)."""

    seq: int
    session_id: str
    is_subagent: bool
    model: str
    message_id: str
    request_id: str
    usage: Usage
    prompt: str  # the user prompt of the turn this call belongs to (first 200 chars)
    prompt_index: int  # how many user prompts the conversation held (1-based)
    step: int  # assistant messages already in this turn before this call
    stop_reason: str
    kind: str  # "main" | "subagent" | "compact" (auto-compaction) | "side" (no tools: outside the conversation)
    t_start: float
    t_end: float


@dataclass
class Failure:
    seq: int
    session_id: str
    status: int
    error_type: str
    prompt: str
    t: float


@dataclass
class _Plan:
    blocks: list[dict]  # content blocks to stream
    stop_reason: str


class FakeAnthropicAPI:
    """Threaded HTTP server on 127.0.0.1; ``records`` lists successful responses."""

    def __init__(self, port: int = 0, dump_dir: str | Path | None = None):
        self._lock = threading.Lock()
        self._counter = 0
        self.records: list[Record] = []
        self.failures: list[Failure] = []
        self.requests_seen = 0
        self._overloaded: set[tuple[str, str, int]] = set()
        self.dump_dir = Path(dump_dir) if dump_dir else None
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeAnthropicAPI":
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeAnthropicAPI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- truth
    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def totals(self, kinds: tuple[str, ...] = ("main", "subagent", "compact", "side")) -> dict[tuple[str, str], Usage]:
        """Usage summed per (session id, model) over the given kinds of calls
        (default: every call that was billed)."""
        out: dict[tuple[str, str], Usage] = {}
        for r in self.snapshot():
            if r.kind in kinds:
                key = (r.session_id, r.model)
                out[key] = out.get(key, ZERO).add(r.usage)
        return out

    def dump_records(self) -> list[dict]:
        return [asdict(r) for r in self.snapshot()]

    # ---- internals
    def _next_seq(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _first_overload(self, key: tuple[str, str, int]) -> bool:
        with self._lock:
            if key in self._overloaded:
                return False
            self._overloaded.add(key)
            return True


# ---------------------------------------------------------------- conversation analysis


def _user_words(content: Any) -> str:
    """The text the user typed last: the last text block that is not an injected <system-reminder>."""
    if isinstance(content, str):
        return content
    parts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
    own = [t for t in parts if not t.lstrip().startswith("<system-reminder>")]
    # The newest prompt is the last block: after a failed turn Claude Code merges
    # the failed prompt and the next one into a single user message.
    return (own or parts or [""])[-1]


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _system_text(body: dict) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def _first_system_block(body: dict) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list) and system and isinstance(system[0], dict):
        return system[0].get("text", "")
    return ""


def _session_id(body: dict, headers: Any) -> str:
    sid = headers.get("X-Claude-Code-Session-Id") or ""
    if sid:
        return sid
    uid = (body.get("metadata") or {}).get("user_id") or ""
    try:
        return json.loads(uid).get("session_id", "")
    except (ValueError, AttributeError):
        m = re.search(r"session_([0-9a-f-]{36})", uid)
        return m.group(1) if m else ""


@dataclass
class _Turn:
    prompt: str
    prompt_index: int
    step: int  # assistant messages after the prompt
    tool_uses_done: int
    last_tool_results: list[str] = field(default_factory=list)


def _current_turn(messages: list[dict]) -> _Turn:
    """The last user message that is a prompt (not a tool result) starts the turn."""
    prompt_pos = -1
    prompt_index = 0
    for i, m in enumerate(messages):
        if m.get("role") == "user" and not _has_tool_result(m.get("content")):
            prompt_index += 1
            prompt_pos = i
    prompt = _user_words(messages[prompt_pos].get("content")) if prompt_pos >= 0 else ""
    after = messages[prompt_pos + 1 :] if prompt_pos >= 0 else messages
    step = sum(1 for m in after if m.get("role") == "assistant")
    tool_uses = 0
    for m in after:
        if m.get("role") == "assistant" and isinstance(m.get("content"), list):
            tool_uses += sum(1 for b in m["content"] if b.get("type") == "tool_use")
    return _Turn(prompt=prompt, prompt_index=prompt_index, step=step, tool_uses_done=tool_uses)


def _keyword(prompt: str, name: str) -> re.Match | None:
    return re.search(rf"\b{name}(\d*)\b", prompt)


def _bash(seq: int, cmd: str) -> dict:
    return {
        "type": "tool_use",
        "id": f"toolu_fake_{seq:06d}_{abs(hash(cmd)) % 10000:04d}",
        "name": "Bash",
        "input": {"command": cmd, "description": "e2e step"},
    }


def _agent(seq: int, idx: int, agent_tool: str) -> dict:
    return {
        "type": "tool_use",
        "id": f"toolu_fake_{seq:06d}_agent{idx}",
        "name": agent_tool,
        "input": {
            "description": f"e2e helper {idx}",
            "prompt": f"{SUBTASK_MARK} number {idx}: run one shell command and report.",
            "subagent_type": "general-purpose",
        },
    }


def _text(s: str) -> dict:
    return {"type": "text", "text": s}


def _plan(body: dict, kind: str, seq: int) -> _Plan:
    messages = body.get("messages") or []
    turn = _current_turn(messages)
    p = turn.prompt
    tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    agent_tool = "Agent" if "Agent" in tools else ("Task" if "Task" in tools else "Agent")

    if kind == "subagent" or SUBTASK_MARK in p:
        if turn.step == 0:
            return _Plan([_text(f"Sub step {seq}."), _bash(seq, f"echo sub-{seq}")], "tool_use")
        return _Plan([_text(f"Subagent done (reply {seq}).")], "end_turn")

    if kind == "side":
        return _Plan([_text(f"side reply {seq}")], "end_turn")

    if _keyword(p, "E2E_MULTITEXT"):
        # A final message with thinking and two text blocks with odd whitespace:
        # shows what Stop's last_assistant_message holds.
        return _Plan(
            [
                {"type": "thinking", "thinking": f"Two parts ({seq}).", "signature": f"sig{seq:06d}"},
                _text(f"  Part one of reply {seq}.  \n"),
                _text(f"\n\nPart two of reply {seq}.  \n\n"),
            ],
            "end_turn",
        )

    if _keyword(p, "E2E_TOOL"):
        if turn.step == 0:
            return _Plan(
                [
                    {"type": "thinking", "thinking": f"I should run a command ({seq}).",
                     "signature": f"sig{seq:06d}"},
                    _text(f"Running a command (reply {seq})."),
                    _bash(seq, f"echo tool-{seq}"),
                ],
                "tool_use",
            )
        return _Plan([_text(f"The command ran (reply {seq}). Done.")], "end_turn")

    m = _keyword(p, "E2E_LOOP")
    if m:
        n = int(m.group(1) or 8)
        if turn.step < n:
            return _Plan([_bash(seq, f"echo loop-{turn.step}-{seq}")], "tool_use")
        return _Plan([_text(f"Loop of {n} finished (reply {seq}).")], "end_turn")

    m = _keyword(p, "E2E_AGENT")
    if m:
        n = int(m.group(1) or 1)
        if turn.step == 0:
            blocks = [_text(f"Delegating (reply {seq}).")]
            blocks += [_agent(seq, i, agent_tool) for i in range(1, n + 1)]
            return _Plan(blocks, "tool_use")
        return _Plan([_text(f"Delegation finished (reply {seq}).")], "end_turn")

    return _Plan([_text(f"Plain reply {seq}.")], "end_turn")


# ---------------------------------------------------------------- HTTP


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _make_handler(api: FakeAnthropicAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, obj: dict, extra: dict | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/_e2e/records":  # for manual experiments
                self._json(200, {"records": api.dump_records(),
                                 "failures": [asdict(f) for f in api.failures]})
                return
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "fake"}})

        do_HEAD = do_GET

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            api.requests_seen += 1
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?")[0]
            if api.dump_dir:
                api.dump_dir.mkdir(parents=True, exist_ok=True)
                n = len(list(api.dump_dir.iterdir()))
                (api.dump_dir / f"{n:04d}{path.replace('/', '_')}.json").write_text(
                    json.dumps({"path": self.path, "headers": dict(self.headers), "body": body}, indent=1)
                )
            if path.endswith("/count_tokens"):
                self._json(200, {"input_tokens": 42})
                return
            if not path.endswith("/v1/messages"):
                self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
                return
            self._messages(body)

        def _messages(self, body: dict) -> None:
            t0 = time.time()
            sid = _session_id(body, self.headers)
            is_sub = SUBAGENT_MARK in _first_system_block(body)
            messages = body.get("messages") or []
            turn = _current_turn(messages)
            has_tools = bool(body.get("tools"))
            kind = "subagent" if is_sub else ("main" if has_tools else "side")
            p = turn.prompt
            if p.startswith(COMPACT_MARK):
                kind = "compact"  # auto-compaction: a forked agent that writes no transcript
            fail = _keyword(p, "E2E_FAIL") if kind == "main" else None
            if fail:
                status = int(fail.group(1) or 400)
                etype = _ERROR_TYPES.get(status, "api_error")
                seq = api._next_seq()
                api.failures.append(Failure(seq, sid, status, etype, p[:200], t0))
                self._json(status, {"type": "error", "error": {"type": etype, "message": "e2e scripted failure"}},
                           {"request-id": f"req_fail_{seq:06d}", "x-should-retry": "false"})
                return
            if kind == "main" and _keyword(p, "E2E_OVERLOAD") and turn.step == 0 and api._first_overload(
                (sid, p, turn.prompt_index)
            ):
                seq = api._next_seq()
                api.failures.append(Failure(seq, sid, 529, "overloaded_error", p[:200], t0))
                self._json(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                           {"request-id": f"req_overload_{seq:06d}", "x-should-retry": "true"})
                return
            slow = _keyword(p, "E2E_SLOW")
            pause = int(slow.group(1) or 50) / 1000.0 if slow else 0.0

            seq = api._next_seq()
            plan = _plan(body, kind, seq)
            model = body.get("model") or "claude-unknown"
            usage = Usage.for_response(seq)
            huge = _keyword(p, "E2E_HUGE") if kind == "main" else None
            if huge and turn.step == 0:
                # this response fills the context window: the next turn compacts
                usage = Usage(usage.input_tokens + 990_000, usage.output_tokens, usage.cache_read_tokens,
                              usage.cache_write_tokens)
            msg_id = f"msg_fake{seq:06d}"
            req_id = f"req_fake{seq:06d}"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("request-id", req_id)
            self.send_header("Connection", "close")
            self.end_headers()
            full = {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_write_tokens,
                "cache_read_input_tokens": usage.cache_read_tokens,
            }
            out = [
                _sse("message_start", {"type": "message_start", "message": {
                    "id": msg_id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    # Like the real API: message_start carries a provisional output count.
                    "usage": {**full, "output_tokens": 1,
                              "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens,
                                                 "ephemeral_1h_input_tokens": 0},
                              "service_tier": "standard"}}}),
                _sse("ping", {"type": "ping"}),
            ]
            for i, block in enumerate(plan.blocks):
                out.extend(_block_events(i, block))
            out.append(_sse("message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
                                              "usage": {**full, "output_tokens": usage.output_tokens}}))
            out.append(_sse("message_stop", {"type": "message_stop"}))
            try:
                for chunk in out:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if pause:
                        time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                return  # client went away: it was not billed for a finished message
            self.close_connection = True
            with api._lock:
                api.records.append(Record(
                    seq=seq, session_id=sid, is_subagent=is_sub, model=model, message_id=msg_id,
                    request_id=req_id, usage=usage, prompt=p[:200], prompt_index=turn.prompt_index,
                    step=turn.step, stop_reason=plan.stop_reason, kind=kind, t_start=t0, t_end=time.time(),
                ))

    return Handler


def _block_events(i: int, block: dict) -> list[bytes]:
    t = block["type"]
    if t == "text":
        text = block["text"]
        half = max(1, len(text) // 2)
        return [
            _sse("content_block_start", {"type": "content_block_start", "index": i,
                                         "content_block": {"type": "text", "text": ""}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "text_delta", "text": text[:half]}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "text_delta", "text": text[half:]}}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    if t == "thinking":
        return [
            _sse("content_block_start", {"type": "content_block_start", "index": i,
                                         "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "thinking_delta", "thinking": block["thinking"]}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "signature_delta", "signature": block["signature"]}}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    if t == "tool_use":
        return [
            _sse("content_block_start", {"type": "content_block_start", "index": i,
                                         "content_block": {"type": "tool_use", "id": block["id"],
                                                           "name": block["name"], "input": {}}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": json.dumps(block["input"])}}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]
    raise ValueError(t)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    dump = sys.argv[2] if len(sys.argv) > 2 else None
    api = FakeAnthropicAPI(port, dump_dir=dump).start()
    print(f"fake API on {api.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.stop()
        print(json.dumps(api.dump_records(), indent=1))
