"""Group commit: reports handled in the same event-loop turn share one COMMIT.

After the signature check, a COMMIT is the largest fixed cost of a /report.
Under load many requests become ready in one loop turn: each handler queues its
rows and awaits; one callback, scheduled with ``call_soon`` after all of them,
writes the batch in one transaction and answers every waiter. Nobody gets a 200
before the commit holding their rows; a report is still all-or-nothing (a failed
commit fails every report of its batch, whole). The connection is used only from
the loop thread and no transaction spans an ``await``, so batches never overlap
other writes. An idle server commits each report alone, one loop turn later.

(Verifying signatures on a worker thread was tried and measured: libsodium drops
the GIL, but handing each check across threads and back costs the loop thread
about what the check itself does, so they are verified inline.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from .store import Store

MAX_BATCH = 256  # bounds one transaction under a flood


class GroupCommit:
    """``await submit(rows)`` -> "stored" | "duplicate" | "conflict", once committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[list, asyncio.Future]] = []
        self.batches = 0  # for tests and the curious

    async def submit(self, rows: list) -> str:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((rows, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        elif len(self._pending) >= MAX_BATCH:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.batches += 1
        try:
            outcomes: list[Any] = self.store.add_reports([rows for rows, _ in batch])
        except Exception as exc:  # rolled back: every report of the batch failed whole
            outcomes = [exc] * len(batch)
        _settle([(future, outcome) for (_, future), outcome in zip(batch, outcomes)])


def _settle(results: list[tuple[asyncio.Future, Any]]) -> None:
    for future, result in results:
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
