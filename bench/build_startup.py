"""Start-up time of the frozen bundles that build/build makes.

    .venv/bin/python bench/build_startup.py [--runs 41]

Times, as wall clock of a whole process run (fork+exec to exit):
  - the frozen no-op (build/build --noop): the floor every frozen run pays;
  - the frozen `ccflux --version`;
  - the frozen `ccflux hook` through plugin/scripts/ccflux-hook with a SessionStart event and
    an empty state dir (no configuration: the hook's cheapest path, what an unconfigured
    install pays per event);
  - `python -c pass` for scale.
Prints the median and the 10th/90th percentiles of each, and each frozen median over the
no-op's. Run build/build and build/build --noop first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def platform_dir() -> str:
    out = subprocess.run(
        ["bash", "-c", f"source {REPO / 'build/common.sh'} && platform_dir"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def timed(cmd: list[str], runs: int, stdin: bytes = b"", env: dict | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def summary(name: str, ms: list[float], base: float | None) -> str:
    q = statistics.quantiles(ms, n=10)
    med = statistics.median(ms)
    ratio = f"  {med / base:4.2f}x no-op" if base else ""
    return f"{name:<42} median {med:7.1f} ms   p10 {q[0]:7.1f}   p90 {q[-1]:7.1f}{ratio}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=41)
    args = ap.parse_args()

    exe = ".exe" if platform_dir().startswith("windows") else ""
    noop = REPO / "build/out/noop" / f"noop{exe}"
    ccflux = REPO / "plugin/bin" / platform_dir() / "ccflux" / f"ccflux{exe}"
    wrapper = REPO / "plugin/scripts/ccflux-hook"
    missing = [str(p) for p in (noop, ccflux) if not p.exists()]
    if missing:
        print("missing (run build/build and build/build --noop):", *missing, file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "CCFLUX_HOME": state,
            "CLAUDE_PLUGIN_ROOT": str(REPO / "plugin"),
        }
        env.pop("CLAUDE_PLUGIN_OPTION_API_ENDPOINT", None)
        env.pop("CLAUDE_PLUGIN_OPTION_API_TOKEN", None)
        event = json.dumps({
            "session_id": "bench-session",
            "transcript_path": os.path.join(state, "none.jsonl"),
            "cwd": state,
            "hook_event_name": "SessionStart",
            "source": "startup",
        }).encode()

        for cmd in ([str(noop)], [str(ccflux), "--version"]):  # warm the page cache
            timed(cmd, 3)
        rows = []
        base_ms = timed([str(noop)], args.runs)
        base = statistics.median(base_ms)
        rows.append(summary("frozen no-op", base_ms, None))
        rows.append(summary("frozen ccflux --version", timed([str(ccflux), "--version"], args.runs), base))
        rows.append(summary("wrapper + frozen hook (SessionStart, unconfigured)",
                            timed(["sh", str(wrapper)], args.runs, event, env), base))
        rows.append(summary(f"{Path(sys.executable).name} -c pass (for scale)",
                            timed([sys.executable, "-c", "pass"], args.runs), base))

    print(f"{args.runs} runs each, {os.cpu_count()} CPUs, {platform_dir()}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
