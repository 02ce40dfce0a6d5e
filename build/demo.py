"""The demo behind build/demo (which sets up the venv, the frozen binary and Claude Code).

Everything runs on 127.0.0.1 in a temp dir and is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from e2e.fake_api import FakeAnthropicAPI  # noqa: E402  (stdlib only)

PROMPTS = [
    "Say hello in one sentence.",
    "E2E_TOOL Run one shell command, then tell me what you saw.",
]
FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
USER = "dev@example.com"


def section(title: str) -> None:
    print(f"\n==== {title} ====", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(where: Path) -> tuple[Path, Path, Path]:
    """A CA made for this run and a server certificate for 127.0.0.1 / localhost."""
    import trustme

    ca = trustme.CA(organization_name="ccflux demo CA")
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, chain, key = where / "ca.pem", where / "server-chain.pem", where / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    return ca_pem, chain, key


class Receiver:
    def __init__(self, root: Path, chain: Path, key: Path, ca_pem: Path):
        self.db = root / "receiver.db"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_pem = ca_pem
        self.log = open(root / "receiver.log", "wb")
        self.env = {k: v for k, v in os.environ.items() if k not in (
            "DATABASE_PATH", "LISTEN_ADDR", "REQUIRE_SIGNATURES", "ADMIN_TOKEN")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ccflux_receiver", "serve", "--db", str(self.db),
             "--listen", f"127.0.0.1:{self.port}", "--tls-cert", str(chain), "--tls-key", str(key)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        print(f"receiver pid {self.proc.pid} on {self.url} (db {self.db})")

    def wait_healthy(self, timeout: float = 30) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", context=ctx, timeout=2) as r:
                    print(f"GET /health -> {r.status} {r.read().decode()}")
                    return
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"receiver did not come up ({exc}); see {self.log.name}")
                time.sleep(0.2)

    def admin(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "ccflux_receiver", *args, "--db", str(self.db)],
                             capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL)
        if out.returncode:
            raise SystemExit(f"ccflux-receiver {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_session(claude: str, env: dict, work: Path) -> str:
    """Two turns in ONE Claude Code session (stream-json in, one line per prompt)."""
    argv = [claude, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--plugin-dir", str(REPO / "plugin"), "--allowedTools", "Bash"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=work, env=env)
    print(f"claude pid {proc.pid}: {' '.join(argv[1:])}")
    session = ""
    try:
        for prompt in PROMPTS:
            proc.stdin.write(json.dumps({"type": "user", "message": {"role": "user", "content": prompt}}) + "\n")
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit(f"claude exited early: {proc.stderr.read()[-2000:]}")
                msg = json.loads(line) if line.startswith("{") else {}
                if msg.get("type") == "result":
                    session = msg.get("session_id", session)
                    print(f"  turn done: {prompt[:50]!r} -> {str(msg.get('result'))[:60]!r}")
                    break
        proc.stdin.close()
        proc.stdout.read()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"claude exited with {proc.returncode}; session {session}")
    return session


def received(rx: Receiver) -> dict:
    rows = json.loads(rx.admin("usage", "--by", "session,model", "--json"))
    return {(r["session_id"], r["model"]): tuple(int(r[f]) for f in FIELDS) for r in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = ap.parse_args()
    claude, frozen = os.environ["CCFLUX_DEMO_CLAUDE"], os.environ["CCFLUX_DEMO_FROZEN"]

    tmp = Path(tempfile.mkdtemp(prefix="ccflux-demo-"))
    home, state = tmp / "home", tmp / "ccflux-state"
    (home / "work").mkdir(parents=True)
    rx = api = None
    try:
        section("receiver: local CA, TLS, SQLite")
        ca_pem, chain, key = make_ca(tmp)
        rx = Receiver(tmp, chain, key, ca_pem)
        rx.wait_healthy()
        token = rx.admin("users", "add", USER).strip()
        print(f"users add {USER} -> refresh token ({len(token)} chars, not shown)")

        section("hook: ccflux configure (token on stdin)")
        # The user's hook environment: its state dir and the organisation's CA. No dev flag.
        hook_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CCFLUX_", "CLAUDE", "ANTHROPIC_"))}
        hook_env.update(HOME=str(home), CCFLUX_HOME=str(state), CCFLUX_CA_CERT=str(ca_pem))
        out = subprocess.run([frozen, "configure", "--endpoint", rx.url], input=token, text=True,
                             capture_output=True, env=hook_env)
        print((out.stdout + out.stderr).strip())
        if out.returncode:
            return 1

        section("Claude Code session with the plugin (fake Anthropic API on 127.0.0.1)")
        api = FakeAnthropicAPI().start()
        claude_env = {**hook_env, "ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "sk-ant-demo",
                      "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
        session = run_session(claude, claude_env, home / "work")

        section("waiting for the reports to land")
        want = {k: (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
                for k, u in api.totals().items()}
        deadline = time.monotonic() + 60
        while (have := received(rx)) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"fake API billed: {want}")
        print(f"receiver stored: {have}")

        section("ccflux status")
        print(subprocess.run([frozen, "status"], capture_output=True, text=True, env=hook_env).stdout.strip())

        section("ccflux-receiver usage --by user,model,session")
        print(rx.admin("usage", "--by", "user,model,session").rstrip())
        if have != want:
            print("\nMISMATCH: the receiver's totals differ from what the fake API billed "
                  f"(hook logs in {state}; receiver log {rx.log.name})")
            args.keep = True
            return 1
        print(f"\nOK: session {session}: every token the API billed reached the receiver, exactly once.")
        return 0
    finally:
        section("cleanup")
        if api:
            api.stop()
        if rx:
            rx.stop()
            print(f"receiver pid {rx.proc.pid} stopped")
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
