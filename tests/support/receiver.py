"""A real receiver for tests: `python -m ccflux_receiver serve` over TLS on a free port.

    ca = TestCA(tmp_dir)                     # trustme CA + a 127.0.0.1/localhost server cert
    rx = ReceiverProcess(tmp_dir, ca, env={"REQUIRE_SIGNATURES": "1"})
    rx.start()                               # returns once /health answers over TLS
    token = rx.add_user("a@example.com")     # the real admin CLI; the refresh token
    rows = rx.usage(by="session,model")      # the real `usage --json`
    rx.stop(); rx.restart(); rx.kill()

Clients trust ``ca.ca_pem_path`` (CCFLUX_CA_CERT); ``rx.client_env()`` has it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional

import httpx
import trustme

START_TIMEOUT = 20.0
# Settings the receiver reads from the environment: cleared so the caller's
# shell cannot leak into a test; pass them explicitly with env={...}.
_RECEIVER_ENV = ("DATABASE_PATH", "LISTEN_ADDR", "ACCESS_TOKEN_EXPIRY_SECS",
                 "REFRESH_TOKEN_ROLLING_DAYS", "RATE_LIMIT_PER_MINUTE", "BODY_LIMIT_KB",
                 "REQUIRE_SIGNATURES", "ADMIN_TOKEN", "COOKIE_SECURE")


class TestCA:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost."""

    __test__ = False  # not a pytest test class

    def __init__(self, tmp_dir: os.PathLike | str) -> None:
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem_path = str(self.dir / "ca.pem")
        self.server_cert_path = str(self.dir / "server-chain.pem")
        self.server_key_path = str(self.dir / "server-key.pem")
        self.ca.cert_pem.write_to_path(self.ca_pem_path)
        server.private_key_pem.write_to_path(self.server_key_path)
        with open(self.server_cert_path, "wb") as out:
            for blob in server.cert_chain_pems:
                out.write(blob.bytes())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_pem_path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReceiverProcess:
    """The receiver as a subprocess; its output goes to ``log_path``."""

    def __init__(self, tmp_dir: os.PathLike | str, ca: TestCA,
                 env: Optional[Mapping[str, str]] = None, port: Optional[int] = None) -> None:
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.db_path = str(self.dir / "receiver.db")
        self.log_path = str(self.dir / "receiver.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment a ccflux client needs to trust this receiver."""
        return {"CCFLUX_CA_CERT": self.ca.ca_pem_path}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _RECEIVER_ENV}
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> "ReceiverProcess":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [sys.executable, "-m", "ccflux_receiver", "serve",
               "--listen", f"127.0.0.1:{self.port}", "--db", self.db_path,
               "--tls-cert", self.ca.server_cert_path, "--tls-key", self.ca.server_key_path]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self._env())
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = self.ca.ssl_context()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/health", verify=context, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"receiver not ready after {START_TIMEOUT}s:\n{self.logs()}")

    def logs(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> "ReceiverProcess":
        """Stop, then start again on the same port with the same database."""
        self.stop()
        return self.start()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the real admin CLI against this receiver's database."""
        cmd = [sys.executable, "-m", "ccflux_receiver", *args, "--db", self.db_path]
        return subprocess.run(cmd, capture_output=True, text=True, env=self._env(),
                              check=check, timeout=60)

    def add_user(self, email: str) -> str:
        """Create ``email``; return its refresh token (the CLI's whole stdout)."""
        return self.cli("users", "add", email).stdout.strip()

    def usage(self, by: str = "user,model", since: Optional[str] = None,
              as_json: bool = True) -> list[dict] | str:
        args = ["usage", "--by", by] + (["--since", since] if since else [])
        if not as_json:
            return self.cli(*args).stdout
        return json.loads(self.cli(*args, "--json").stdout)

    def __enter__(self) -> "ReceiverProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
