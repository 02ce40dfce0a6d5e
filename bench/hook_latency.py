"""Hook speed and memory (issue 2, section 10). Prints figures; asserts nothing.

    python bench/hook_latency.py [--runs 15] [--frozen]

Each figure is a median of ``--runs`` fresh processes and a ratio against a
baseline timed in the same invocation, interleaved with it so that machine
load hits both alike:
  1. Stop with nothing new            vs `python -c pass` (frozen: the frozen no-op)
  2. Stop with one new turn, sent over TLS to a loopback receiver with a cached
     token (CCFLUX_SEND_MODE=inline: the send happens inside the timed run)
                                      vs a script importing httpx + nacl making one
                                         signed TLS POST to the same receiver
  3. one new turn on a 100 MB transcript vs on a 100 KB one
  4. peak RSS of a hook run, also when the new part holds a 50 MB line
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.receiver import ReceiverProcess, TestCA  # noqa: E402
from support.transcripts import append, assistant_lines, hook_event, usage, user_line  # noqa: E402

FLOOR_SCRIPT = ROOT / "build" / "entry_floor.py"  # the same script frozen by build/build --floor


def timed(cmd: list[str], stdin: bytes = b"", env: dict | None = None) -> float:
    """Wall seconds of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}")
    return elapsed


# The peak RSS of a child counts pages it shares with its parent before exec, so
# measure from a small intermediate process, not from this (large) one.
_RSS_PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdin=sys.stdin, check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mib(cmd: list[str], stdin: bytes, env: dict) -> float:
    done = subprocess.run([sys.executable, "-S", "-c", _RSS_PROBE, *cmd], input=stdin, env=env,
                          capture_output=True, check=True)
    return int(done.stdout) / 1024


def compare(name: str, runs: int, subject, baseline) -> None:
    """Interleave subject and baseline runs; print medians and the ratio."""
    a, b = [], []
    for i in range(runs):
        b.append(baseline(i))
        a.append(subject(i))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{name:<58} {ma * 1000:8.1f} ms  baseline {mb * 1000:8.1f} ms  ratio {ma / mb:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--frozen", action="store_true", help="time the frozen build (build/build first)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ccflux-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def commands(frozen: bool) -> tuple[list[str], list[str], list[str], str]:
    """(hook, no-op baseline, send floor baseline, description)."""
    if not frozen:
        launcher = shutil.which("ccflux", path=str(Path(sys.executable).parent)) or "ccflux"
        return ([launcher, "hook"], [sys.executable, "-c", "pass"], [sys.executable, str(FLOOR_SCRIPT)],
                f"source, console script {launcher}")
    import platform

    system = platform.system().lower()
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    binary = ROOT / "plugin" / "bin" / f"{system}-{arch}" / "ccflux" / "ccflux"
    noop = ROOT / "build" / "out" / "noop" / "noop"
    floor = ROOT / "build" / "out" / "floor" / "floor"
    for path in (binary, noop, floor):
        if not path.exists():
            raise SystemExit(f"{path} missing: run build/build, build/build --noop and build/build --floor")
    return [str(binary), "hook"], [str(noop)], [str(floor)], f"frozen onedir {binary}"


def run(args: argparse.Namespace, work: Path) -> None:
    hook_cmd, noop_cmd, floor_cmd, what = commands(args.frozen)
    # Byte-compile the source once: with PYTHONDONTWRITEBYTECODE set (as on this machine)
    # every source run would otherwise recompile ccflux, which no installed copy does.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "hook"), str(ROOT / "build")], check=True)
    print(f"ccflux hook benchmark: {what}; medians of {args.runs} runs; {os.cpu_count()} cores")
    ca = TestCA(work / "ca")
    rx = ReceiverProcess(work / "rx", ca, env={"RATE_LIMIT_PER_MINUTE": "100000"}).start()
    try:
        token = rx.add_user("bench@example.com")
        env = dict(os.environ, CCFLUX_HOME=str(work / "state"), CCFLUX_CA_CERT=ca.ca_pem_path,
                   CLAUDE_CONFIG_DIR=str(work / "claude"), CCFLUX_SEND_MODE="inline",
                   CLAUDE_PLUGIN_OPTION_API_ENDPOINT=rx.base_url, CLAUDE_PLUGIN_OPTION_API_TOKEN=token)
        t = work / "proj" / "bench.jsonl"
        turn = [0]

        def new_turn(path: Path, sid: str, extra: list[str] | None = None) -> bytes:
            turn[0] += 1
            text = f"answer {turn[0]}"
            append(path, (extra or []) + [user_line()] + assistant_lines(usage(turn[0], 2, 3, 4), text=text))
            return hook_event("Stop", sid, path, last_assistant_message=text)

        timed(hook_cmd, new_turn(t, "bench"), env)  # warm-up: token cached, key registered
        access = json.loads((work / "state" / "token_cache.json").read_text())["access_token"]
        no_news = hook_event("Stop", "bench", t, last_assistant_message=f"answer {turn[0]}")
        compare("1. Stop, nothing new  vs  no-op start", args.runs,
                lambda i: timed(hook_cmd, no_news, env), lambda i: timed(noop_cmd))
        floor_env = dict(os.environ, CCFLUX_FLOOR_BASE=rx.base_url, CCFLUX_FLOOR_TOKEN=access,
                         CCFLUX_FLOOR_CA=ca.ca_pem_path, CCFLUX_FLOOR_SEED=str(work / "state" / "signing_key"))
        compare("2. Stop, one new turn sent over TLS  vs  httpx+nacl POST", args.runs,
                lambda i: timed(hook_cmd, new_turn(t, "bench"), env),
                lambda i: timed(floor_cmd, b"", dict(floor_env, CCFLUX_FLOOR_TURN=str(i))))
        quiet = dict(env, CCFLUX_SEND_MODE="none")
        big, small = work / "proj" / "big.jsonl", work / "proj" / "small.jsonl"
        filler = json.dumps({"type": "attachment", "content": "z" * 100_000})
        append(big, [filler] * 1000)   # ~100 MB
        append(small, [filler])        # ~100 KB
        timed(hook_cmd, new_turn(big, "big"), quiet)
        timed(hook_cmd, new_turn(small, "small"), quiet)
        compare("3. one new turn: 100 MB transcript  vs  100 KB transcript", args.runs,
                lambda i: timed(hook_cmd, new_turn(big, "big"), quiet),
                lambda i: timed(hook_cmd, new_turn(small, "small"), quiet))
        rss = max(peak_rss_mib(hook_cmd, new_turn(t, "bench"), env) for _ in range(3))
        huge = json.dumps({"type": "user", "message": {"role": "user", "content": "x" * (50 << 20)}})
        rss_huge = peak_rss_mib(hook_cmd, new_turn(t, "bench", [huge]), env)
        print(f"4. peak RSS: one turn sent {rss:.1f} MiB; with a 50 MB line in it {rss_huge:.1f} MiB")
        got = rx.usage(by="session")
        print(f"   (receiver holds {sum(r['reports'] for r in got)} reports from this run)")
    finally:
        rx.stop()


if __name__ == "__main__":
    main()
