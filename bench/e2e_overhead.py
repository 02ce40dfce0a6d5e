"""What ccflux costs the user: wall time of real Claude Code turns with and without the plugin.

Same scenario, same fake API, runs interleaved (with, without, with, ...) so that
drift hits both sides alike; median of N runs each; ratio with/without (goal <= 1.05).
"With" is the shipped plugin (wrapper + frozen binary, build/build first) reporting
to a real receiver over TLS on loopback, exactly like tests/e2e.

    .venv/bin/python bench/e2e_overhead.py [-n 5] [--plugin-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.fake_api import FakeAnthropicAPI  # noqa: E402
from e2e.harness import PLUGIN_DIR, Workspace, ensure_claude, frozen_binary  # noqa: E402
from support.receiver import ReceiverProcess, TestCA  # noqa: E402

SCENARIOS = {
    # one `claude -p` that runs a tool and exits right after its turn
    "one-shot -p, thinking+tool+final (2 API calls)": ("run", "E2E_TOOL bench"),
    # five turns in one process: what an interactive user sees turn after turn
    "5 turns in one process (stream-json)": ("conversation", ["one", "two E2E_TOOL", "three", "four", "five"]),
}


VERBOSE = False


def once(ws: Workspace, kind: str, arg, hook_ms: list | None = None) -> float:
    t0 = time.monotonic()
    marks: list[float] = []
    if kind == "run":
        run = ws.run(arg)
    else:
        run = ws.conversation(arg, between=lambda k: marks.append(time.monotonic() - t0))
    dt = time.monotonic() - t0
    if VERBOSE:
        print(f"    {'with' if ws.plugin_dir else 'without'}: {dt:.2f}s"
              + (f", turns done at {' '.join(f'{m:.2f}' for m in marks)}" if marks else ""), flush=True)
    if run.returncode != 0:
        raise SystemExit(f"claude failed (rc={run.returncode}): {run.stderr[-1000:]}")
    if hook_ms is not None:
        hook_ms.extend(stop_hook_ms(ws, run.session_id))
    return dt


def stop_hook_ms(ws: Workspace, session_id: str) -> list[int]:
    """How long Claude Code waited for the Stop hooks, by its own account
    (`system` lines of subtype stop_hook_summary in the transcript)."""
    out = []
    for path in (ws.home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"):
        for line in path.open():
            if '"stop_hook_summary"' in line:
                obj = json.loads(line)
                out.extend(h.get("durationMs", 0) for h in obj.get("hookInfos") or [])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs per side and scenario (>= 5)")
    ap.add_argument("--plugin-dir", type=Path, default=PLUGIN_DIR)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    ap.add_argument("--keep", type=Path, help="keep the workspaces in this (new) directory for inspection")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    claude = ensure_claude()
    if args.plugin_dir == PLUGIN_DIR:
        frozen_binary(PLUGIN_DIR)
    with tempfile.TemporaryDirectory(prefix="ccflux-bench-e2e-") as tmp:
        tmp_path = Path(tmp)
        if args.keep:
            args.keep.mkdir(parents=True)
            tmp_path = args.keep
        ca = TestCA(tmp_path / "ca")
        rx = ReceiverProcess(tmp_path / "rx", ca).start()
        api = FakeAnthropicAPI().start()
        try:
            token = rx.add_user("bench@example.com")
            with_plugin = Workspace(tmp_path / "with", claude, api, args.plugin_dir, rx, token, ca.ca_pem_path)
            without = Workspace(tmp_path / "without", claude, api, None)
            print(f"Claude Code {claude}; plugin {args.plugin_dir}; receiver {rx.base_url}; n={args.n}")
            for name, (kind, arg) in SCENARIOS.items():
                once(with_plugin, kind, arg)  # warm caches on both sides first
                once(without, kind, arg)
                t_with, t_without, hook_ms = [], [], []
                for _ in range(args.n):
                    t_with.append(once(with_plugin, kind, arg, hook_ms))
                    t_without.append(once(without, kind, arg))
                m_with, m_without = statistics.median(t_with), statistics.median(t_without)
                print(f"{name}:\n  with plugin    median {m_with:.3f}s  runs {' '.join(f'{t:.2f}' for t in t_with)}"
                      f"\n  without plugin median {m_without:.3f}s  runs {' '.join(f'{t:.2f}' for t in t_without)}"
                      f"\n  ratio {m_with / m_without:.3f}  (+{(m_with - m_without) * 1000:.0f} ms; goal <= 1.05)"
                      f"\n  Stop hook time per turn (Claude Code's durationMs): median {statistics.median(hook_ms):.0f} ms,"
                      f" max {max(hook_ms)} ms, n={len(hook_ms)}")
            rows = rx.usage(by="user")
            print(f"receiver got {sum(r['reports'] for r in rows)} reports during the benchmark")
        finally:
            api.stop()
            rx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
