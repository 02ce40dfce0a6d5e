"""Prometheus text-format counters (PROTOCOL.md names), in process memory."""

from __future__ import annotations

from collections import Counter
from typing import Callable

COUNTERS = {
    "ccflux_reports_accepted_total": "Reports answered 200 (new or duplicate).",
    "ccflux_reports_duplicate_total": "Reports already stored (answered 200, stored once).",
    "ccflux_reports_conflict_total": "Resends with other numbers for a stored key (first write kept).",
    "ccflux_reports_auth_rejected_total": "Reports answered 401.",
    "ccflux_reports_sig_rejected_total": "Reports answered 403.",
    "ccflux_reports_rate_limited_total": "Requests answered 429 (all three POST endpoints).",
    "ccflux_reports_invalid_total": "Reports answered 400 or 413.",
    "ccflux_token_exchanges_total": "Access tokens issued by /token.",
    "ccflux_key_registrations_total": "Device keys newly registered.",
}


class Metrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.responses: Counter[tuple[str, int]] = Counter()

    def inc(self, name: str) -> None:
        self.counts[name] += 1

    def response(self, path: str, status: int) -> None:
        self.responses[(path, status)] += 1

    def render(self, active_access_tokens: Callable[[], int]) -> str:
        lines = []
        for name, help_text in COUNTERS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter",
                      f"{name} {self.counts[name]}"]
        lines += ["# HELP ccflux_active_access_tokens Access tokens not yet expired.",
                  "# TYPE ccflux_active_access_tokens gauge",
                  f"ccflux_active_access_tokens {active_access_tokens()}",
                  "# HELP ccflux_http_responses_total Responses by endpoint and status.",
                  "# TYPE ccflux_http_responses_total counter"]
        for (path, status), count in sorted(self.responses.items()):
            lines.append(f'ccflux_http_responses_total{{path="{path}",status="{status}"}} {count}')
        return "\n".join(lines) + "\n"
