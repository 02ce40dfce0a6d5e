"""Load benchmark of the receiver (issue 3, "Speed"). Prints figures; asserts nothing.

    .venv/bin/python bench/receiver_load.py [--seconds 20] [--connections 16]

1. signed /report: every request a distinct report (own session/turn), signed
   right before the run (the +-300 s window), sent by wrk over keep-alive;
2. the same load (same generator, same headers, no body) against GET /health
   of the same server (the ceiling), and
   against POST /report without a token (401 at once: the hot path's own floor);
3. RSS of the server before and after 100,000 /report requests that each carry
   a distinct random bogus token (the rate limiter must not grow with them).

Needs `wrk` (Debian package). The server runs `python -m ccflux_receiver serve`
on 127.0.0.1 over plain HTTP (TLS belongs to the proxy in front; the tests cover
TLS), with the rate limit raised so the limiter runs but never refuses.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ccflux.wire import format_timestamp, signature_header, signed_message
from nacl.signing import SigningKey

LUA_COMMON = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "errors": %d, '
    .. '"p50_ms": %f, "p99_ms": %f, "max_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""

LUA_REPORTS = LUA_COMMON + """
local n = 0
local method, path = "POST", "/report"
function init(args)
  dofile(args[1])  -- defines REQUESTS = { {body, ts, sig}, ... }
  nthreads = tonumber(args[2])
  method, path = args[3] or method, args[4] or path
  n = tid
end
function request()
  local r = REQUESTS[(n % #REQUESTS) + 1]
  n = n + nthreads
  return wrk.format(method, path, {
    ["Authorization"] = AUTH, ["Content-Type"] = "application/json",
    ["X-CCFLUX-Timestamp"] = r[2], ["X-CCFLUX-Signature"] = r[3]},
    method == "POST" and r[1] or nil)
end
"""

LUA_BOGUS = LUA_COMMON + """
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
function init(args)
  math.randomseed(os.time() + tid * 7919)
end
function request()
  local t = {}
  for i = 1, 43 do local k = math.random(1, 64); t[i] = chars:sub(k, k) end
  return wrk.format("POST", "/report", {
    ["Authorization"] = "Bearer ccf_at_" .. table.concat(t),
    ["Content-Type"] = "application/json"}, BODY)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lua_string(data: bytes | str) -> str:
    text = data.decode() if isinstance(data, bytes) else data
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def report_body(session: str, turn: int) -> bytes:
    return json.dumps({"schema_version": 1, "session_id": session, "user_email": "",
                       "turn_index": turn, "timestamp_utc": format_timestamp(time.time()),
                       "models": {"claude-opus-4-1": {"input_tokens": 1200 + turn,
                                                      "output_tokens": 345, "cache_read_tokens": 20000,
                                                      "cache_write_tokens": 512}},
                       "plugin_version": "0.1.0"}, separators=(",", ":")).encode()


class Server:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.db = str(workdir / "bench.db")
        self.env = {**os.environ, "RATE_LIMIT_PER_MINUTE": "100000000"}
        self.log = open(workdir / "server.log", "wb")
        self.cmd = [sys.executable, "-m", "ccflux_receiver"]
        self.proc = subprocess.Popen(
            self.cmd + ["serve", "--listen", f"127.0.0.1:{self.port}", "--db", self.db],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def post(self, path: str, token: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else b""
        req = urllib.request.Request(self.url + path, data=data, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def responses(self, path: str, status: int) -> int:
        text = urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode()
        label = f'ccflux_http_responses_total{{path="{path}",status="{status}"}} '
        return next((int(l[len(label):]) for l in text.splitlines() if l.startswith(label)), 0)

    def cpu_secs(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.log.close()


def wrk(script: Path, url: str, seconds: int, connections: int, *args: str,
        until=None, server: "Server | None" = None) -> dict:
    """Run wrk; with ``until`` (a predicate polled every 0.2 s) stop it early by SIGINT."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
           "-s", str(script), url, "--", *args]
    cpu_before = server.cpu_secs() if server else 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    while until is not None and proc.poll() is None and not until():
        time.sleep(0.2)
    if proc.poll() is None and until is not None:
        proc.send_signal(signal.SIGINT)
    out = proc.communicate()[0]
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["rps"] = result["requests"] / result["seconds"]
    if server:  # server CPU per request: comparable even on a busy machine
        result["cpu_us"] = (server.cpu_secs() - cpu_before) / max(1, result["requests"]) * 1e6
    return result


def signed_requests_file(workdir: Path, key: SigningKey, count: int) -> Path:
    stamp = format_timestamp(time.time())
    public = bytes(key.verify_key)
    path = workdir / "requests.lua"
    with open(path, "w") as out:
        out.write("REQUESTS = {\n")
        for i in range(count):
            body = report_body(f"bench-{i // 50:06d}", i % 50)
            sig = key.sign(signed_message(body, stamp)).signature
            out.write(f"{{{lua_string(body)},{lua_string(stamp)},{lua_string(signature_header(sig, public))}}},\n")
        out.write("}\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--bogus", type=int, default=100_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ccflux-bench-") as tmp:
        workdir = Path(tmp)
        server = Server(workdir)
        try:
            run(server, workdir, args)
        finally:
            server.stop()
    return 0


def run(server: Server, workdir: Path, args: argparse.Namespace) -> None:
    refresh = subprocess.run(server.cmd + ["users", "add", "bench@example.com", "--db", server.db],
                             capture_output=True, text=True, check=True, env=server.env).stdout.strip()
    access = server.post("/token", refresh)["access_token"]
    key = SigningKey(os.urandom(32))
    server.post("/register-key", access, {
        "public_key": base64.b64encode(bytes(key.verify_key)).decode(), "device_id": "bench"})

    count = args.seconds * 3000 + 5000  # more than wrk can send: every request distinct
    requests = signed_requests_file(workdir, key, count)
    report_lua = workdir / "report.lua"
    report_lua.write_text(f"AUTH = {lua_string('Bearer ' + access)}\n" + LUA_REPORTS)
    health_lua = workdir / "health.lua"
    health_lua.write_text(LUA_COMMON)

    wrk(health_lua, server.url + "/health", 3, args.connections)  # warm-up
    report = wrk(report_lua, server.url, args.seconds, args.connections, str(requests), "1", server=server)
    # The ceiling: GET /health driven by the same Lua generator with the same headers,
    # so both runs pay the same load-generator and header-parsing work on these 2 cores.
    health = wrk(report_lua, server.url, args.seconds, args.connections, str(requests), "1",
                 "GET", "/health", server=server)
    floor_lua = workdir / "floor.lua"  # the hot path's own floor: POST /report, no token -> 401
    floor_lua.write_text('wrk.method = "POST"\n' + LUA_COMMON)
    floor = wrk(floor_lua, server.url + "/report", args.seconds, args.connections, server=server)
    stored = subprocess.run(server.cmd + ["usage", "--by", "user", "--json", "--db", server.db],
                            capture_output=True, text=True, check=True).stdout
    stored_reports = json.loads(stored)[0]["reports"]

    bogus_lua = workdir / "bogus.lua"
    bogus_lua.write_text(f"BODY = {lua_string(report_body('bogus', 0))}\n" + LUA_BOGUS)
    rss_before = server.rss_kb()
    target = server.responses("/report", 401) + args.bogus
    bogus = wrk(bogus_lua, server.url, 600, args.connections,
                until=lambda: server.responses("/report", 401) >= target)
    rss_after = server.rss_kb()

    print(f"signed /report : {report['rps']:8.0f} req/s  p50 {report['p50_ms']:.2f} ms  "
          f"p99 {report['p99_ms']:.2f} ms  max {report['max_ms']:.1f} ms  errors {report['errors']}  "
          f"server CPU {report['cpu_us']:.0f} us/req  "
          f"({report['requests']} requests, {stored_reports} distinct reports stored)")
    print(f"GET /health    : {health['rps']:8.0f} req/s  p50 {health['p50_ms']:.2f} ms  "
          f"p99 {health['p99_ms']:.2f} ms  errors {health['errors']}  "
          f"server CPU {health['cpu_us']:.0f} us/req")
    print(f"POST /report 401 (no token, hot-path floor): {floor['rps']:8.0f} req/s  "
          f"server CPU {floor['cpu_us']:.0f} us/req")
    print(f"ratio report/health: {report['rps'] / health['rps']:.2f} req/s, "
          f"{health['cpu_us'] / report['cpu_us']:.2f} by server CPU per request")
    print(f"bogus tokens   : {bogus['requests']} requests at {bogus['rps']:.0f} req/s "
          f"(401s counted as wrk 'status' errors: {bogus['errors']})")
    print(f"server RSS     : {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after "
          f"(+{(rss_after - rss_before) / 1024:.1f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
