"""Drive the real Claude Code client with the ccflux plugin against the fake API.

Used by tests/e2e (through conftest fixtures) and by bench/e2e_overhead.py.
Nothing here talks to the internet except ``ensure_claude``, which installs the
pinned client from the npm registry into a cache directory once.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from e2e.fake_api import FakeAnthropicAPI, Usage

CLAUDE_VERSION = "2.1.330"
REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugin"
FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
# Env of the test process that must never reach the client or the hook.
_STRIP_PREFIXES = ("CCFLUX_", "CLAUDE", "ANTHROPIC_", "DBG_")
CLAUDE_RUN_TIMEOUT = 120.0


class SetupError(Exception):
    """The e2e prerequisites are missing (client not installable, binary not built)."""


# ------------------------------------------------------------------ installation


def claude_cache_dir(version: str = CLAUDE_VERSION) -> Path:
    """$CCFLUX_E2E_CLAUDE_DIR (set by .ci/run), else ${XDG_CACHE_HOME:-~/.cache}/ccflux-e2e/claude-code-<v>."""
    explicit = os.environ.get("CCFLUX_E2E_CLAUDE_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ccflux-e2e" / f"claude-code-{version}"


def _claude_version(exe: Path) -> str:
    if not os.access(exe, os.X_OK):
        return ""
    home = tempfile.mkdtemp(prefix="ccflux-e2e-version-")
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, env=_clean_env({"HOME": home}))
    except (OSError, subprocess.TimeoutExpired):
        return ""
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def ensure_claude(version: str = CLAUDE_VERSION) -> Path:
    """The pinned Claude Code executable; installs it with npm when missing.

    Raises SetupError (the caller turns it into a loud failure) when npm cannot
    install it: the e2e suite must never be skipped silently.
    """
    root = claude_cache_dir(version)
    exe = root / "node_modules" / ".bin" / "claude"
    if _claude_version(exe).startswith(version):
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers install once
        if _claude_version(exe).startswith(version):
            return exe
        npm = shutil.which("npm")
        if not npm:
            raise SetupError("npm is not on PATH: cannot install @anthropic-ai/claude-code for the e2e tests")
        cmd = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund",
               f"@anthropic-ai/claude-code@{version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SetupError(f"`{' '.join(cmd)}` did not finish in 900 s (is the npm registry reachable?)") from None
        log = f"$ {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        if proc.returncode != 0:
            raise SetupError(f"npm could not install Claude Code {version}:\n{log}")
        got = _claude_version(exe)
        if not got.startswith(version):
            # The package's postinstall copies the native binary over a placeholder;
            # when npm skipped it (ignore-scripts), run it ourselves.
            pkg = root / "node_modules" / "@anthropic-ai" / "claude-code"
            node = shutil.which("node")
            if node and (pkg / "install.cjs").exists():
                subprocess.run([node, "install.cjs"], cwd=pkg, capture_output=True, timeout=300)
                got = _claude_version(exe)
        if not got.startswith(version):
            raise SetupError(f"Claude Code {version} installed but `claude --version` says {got!r}:\n{log}")
    return exe


def platform_tag() -> str:
    """The plugin/bin/<os>-<arch> name the wrapper looks for (see plugin/scripts/ccflux-hook)."""
    system = platform.system().lower()
    arch = platform.machine()
    arch = {"aarch64": "arm64", "amd64": "x86_64", "AMD64": "x86_64", "x64": "x86_64"}.get(arch, arch)
    return f"{system}-{arch}"


def frozen_binary(plugin_dir: Path = PLUGIN_DIR) -> Path:
    exe = plugin_dir / "bin" / platform_tag() / "ccflux" / "ccflux"
    if not os.access(exe, os.X_OK):
        raise SetupError(f"the frozen ccflux binary is missing: {exe}\nRun build/build first "
                         "(the e2e tests run the plugin exactly as users get it).")
    return exe


def plugin_name(plugin_dir: Path) -> str:
    try:
        return json.loads((plugin_dir / ".claude-plugin" / "plugin.json").read_text())["name"]
    except (OSError, ValueError, KeyError) as exc:
        raise SetupError(f"{plugin_dir}/.claude-plugin/plugin.json is missing or has no name: {exc}") from None


# ------------------------------------------------------------------ environment


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
    env.update(extra)
    return env


def _key(session: str, model: str) -> tuple[str, str]:
    return (session, model)


@dataclass
class RunResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    results: list[dict] = field(default_factory=list)  # `result` objects (json or stream-json)

    @property
    def result(self) -> dict:
        return self.results[-1] if self.results else {}

    @property
    def session_id(self) -> str:
        return self.result.get("session_id", "")

    def model_usage(self) -> dict[str, tuple[int, int, int, int]]:
        """Claude Code's own cumulative totals (`modelUsage`) of the last result."""
        out = {}
        for model, u in (self.result.get("modelUsage") or {}).items():
            out[model] = (u.get("inputTokens", 0), u.get("outputTokens", 0),
                          u.get("cacheReadInputTokens", 0), u.get("cacheCreationInputTokens", 0))
        return out


class Workspace:
    """One user's machine: a HOME with the plugin configured, talking to the fake
    API and to a receiver. Several sessions may run in it, in parallel too."""

    def __init__(self, root: Path, claude: Path, api: FakeAnthropicAPI, plugin_dir: Optional[Path],
                 receiver: Any = None, refresh_token: str = "", ca_pem: str = "") -> None:
        self.root = Path(root)
        self.home = self.root / "home"
        self.work = self.home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.claude = claude
        self.api = api
        self.plugin_dir = plugin_dir
        self.receiver = receiver
        self.refresh_token = refresh_token
        self.ca_pem = ca_pem
        self.name = plugin_name(plugin_dir) if plugin_dir else ""
        self.runs: list[RunResult] = []
        if plugin_dir and receiver is not None:
            self.configure(receiver.base_url, refresh_token)

    # The plugin's userConfig, the way Claude Code stores it for a --plugin-dir plugin
    # (settings.json pluginConfigs["<name>@inline"]; hooks get CLAUDE_PLUGIN_OPTION_*).
    def configure(self, endpoint: str, token: str) -> None:
        settings = self.home / ".claude" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        data = {"pluginConfigs": {f"{self.name}@inline": {"options": {
            "api_endpoint": endpoint, "api_token": token}}}}
        settings.write_text(json.dumps(data, indent=1))

    @property
    def state_dir(self) -> Path:
        """Where the hook keeps its state: CLAUDE_PLUGIN_DATA of a --plugin-dir plugin."""
        return self.home / ".claude" / "plugins" / "data" / f"{self.name}-inline"

    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        env = _clean_env({
            "HOME": str(self.home),
            "ANTHROPIC_BASE_URL": self.api.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-e2e-test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        })
        if self.ca_pem:
            env["CCFLUX_CA_CERT"] = self.ca_pem
        env.update(extra or {})
        return env

    def _argv(self, args: Sequence[str]) -> list[str]:
        argv = [str(self.claude), *args, "--allowedTools", "Bash", "Agent"]
        if self.plugin_dir:
            argv += ["--plugin-dir", str(self.plugin_dir)]
        return argv

    # ---- running the client
    def run(self, prompt: str, *args: str, cwd: Optional[Path] = None,
            timeout: float = CLAUDE_RUN_TIMEOUT) -> RunResult:
        """One `claude -p <prompt> --output-format json` (exits after its turn)."""
        argv = self._argv(["-p", prompt, "--output-format", "json", *args])
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd or self.work,
                              env=self.env(), stdin=subprocess.DEVNULL)
        run = RunResult(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
        run.results = _parse_results(proc.stdout)
        self.runs.append(run)
        return run

    def start(self, prompt: str, *args: str, cwd: Optional[Path] = None) -> subprocess.Popen:
        """A `claude -p` in the background (for parallel sessions); finish with ``wait``."""
        argv = self._argv(["-p", prompt, "--output-format", "json", *args])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=cwd or self.work, env=self.env(), stdin=subprocess.DEVNULL)
        proc._e2e_t0 = time.monotonic()  # type: ignore[attr-defined]
        proc._e2e_argv = argv  # type: ignore[attr-defined]
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = CLAUDE_RUN_TIMEOUT) -> RunResult:
        out, err = proc.communicate(timeout=timeout)
        run = RunResult(proc._e2e_argv, proc.returncode, out, err,  # type: ignore[attr-defined]
                        time.monotonic() - proc._e2e_t0)  # type: ignore[attr-defined]
        run.results = _parse_results(out)
        self.runs.append(run)
        return run

    def conversation(self, prompts: Iterable[str], *args: str, between: Optional[Callable[[int], None]] = None,
                     timeout: float = CLAUDE_RUN_TIMEOUT) -> RunResult:
        """Several prompts in ONE process (stream-json), each sent after the previous
        turn's result; ``between(k)`` runs after turn k (0-based) completes."""
        argv = self._argv(["-p", "--input-format", "stream-json", "--output-format", "stream-json",
                           "--verbose", *args])
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.work, env=self.env())
        results: list[dict] = []
        lines: list[str] = []
        try:
            for k, prompt in enumerate(prompts):
                msg = {"type": "user", "message": {"role": "user", "content": prompt}}
                proc.stdin.write(json.dumps(msg) + "\n")
                proc.stdin.flush()
                while True:
                    if time.monotonic() - t0 > timeout:
                        raise TimeoutError(f"no result for prompt {k} after {timeout}s")
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"claude exited before answering prompt {k}: {proc.stderr.read()}")
                    lines.append(line)
                    obj = _json_or_none(line)
                    if obj and obj.get("type") == "result":
                        results.append(obj)
                        break
                if between:
                    between(k)
            proc.stdin.close()
            rest = proc.stdout.read()
            err = proc.stderr.read()
            proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        lines.extend(rest.splitlines(keepends=True))
        results.extend(_parse_results(rest))
        run = RunResult(argv, proc.returncode, "".join(lines), err, time.monotonic() - t0, results)
        self.runs.append(run)
        return run

    # ---- truth and what the receiver got
    def expected(self, kinds: Optional[tuple[str, ...]] = None) -> dict[tuple[str, str], tuple[int, ...]]:
        """The fake API's totals per (session, model): every billed call, or only ``kinds``."""
        totals = self.api.totals(kinds) if kinds else self.api.totals()
        return {k: _tuple(u) for k, u in totals.items()}

    def expected_turns(self, session: str) -> dict[tuple[int, str], tuple[int, ...]]:
        """Fake API usage of one session per (prompt number - 1, model)."""
        out: dict[tuple[int, str], Usage] = {}
        for r in self.api.snapshot():
            if r.session_id == session:
                key = (r.prompt_index - 1, r.model)
                out[key] = out[key].add(r.usage) if key in out else r.usage
        return {k: _tuple(u) for k, u in out.items()}

    def received(self) -> dict[tuple[str, str], tuple[int, ...]]:
        rows = self.receiver.usage(by="session,model", as_json=True)
        return {_key(r["session_id"], r["model"]): tuple(int(r[f]) for f in FIELDS) for r in rows}

    def received_turns(self, session: str) -> dict[tuple[int, str], tuple[int, ...]]:
        rows = self.receiver.usage(by="session,turn,model", as_json=True)
        return {(int(r["turn_index"]), r["model"]): tuple(int(r[f]) for f in FIELDS)
                for r in rows if r["session_id"] == session}

    def wait_for_receiver(self, expected: Callable[[], dict], got: Callable[[], dict],
                          deadline: float = 15.0) -> tuple[dict, dict, float]:
        """Poll until ``got() == expected()`` or ``deadline`` seconds pass."""
        t0 = time.monotonic()
        while True:
            want, have = expected(), got()
            if want == have or time.monotonic() - t0 > deadline:
                return want, have, time.monotonic() - t0
            time.sleep(0.3)

    def diagnostics(self) -> str:
        """Hook logs and the last runs, for assertion messages."""
        parts = []
        for name in ("error.log", "activity.log"):
            p = self.state_dir / name
            try:
                text = p.read_text(errors="replace")
            except OSError:
                text = "(absent)"
            parts.append(f"--- {p}\n{text[-3000:]}")
        for run in self.runs[-3:]:
            parts.append(f"--- run rc={run.returncode} {run.seconds:.1f}s: {' '.join(run.argv)[:300]}\n"
                         f"stderr: {run.stderr[-1000:]}")
        if self.receiver is not None:
            parts.append(f"--- receiver log\n{self.receiver.logs()[-2000:]}")
        return "\n".join(parts)


def _tuple(u: Usage) -> tuple[int, int, int, int]:
    return (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)


def _json_or_none(line: str) -> Optional[dict]:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _parse_results(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        obj = _json_or_none(line.strip())
        if obj and obj.get("type") == "result":
            out.append(obj)
    return out


def diff(want: dict, have: dict) -> str:
    """Per key: the expected and received tuples and their difference."""
    lines = []
    for key in sorted(set(want) | set(have), key=str):
        w, h = want.get(key), have.get(key)
        if w != h:
            delta = tuple(b - a for a, b in zip(w or (0,) * 4, h or (0,) * 4))
            lines.append(f"  {key}: api={w} receiver={h} receiver-api={delta}")
    return "\n".join(lines) or "  (equal)"
