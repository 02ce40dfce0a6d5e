"""Per-loop-turn batching of the two costly steps of a /report.

Under load many requests become ready in one event-loop turn. Each handler
queues its item and awaits; one callback, scheduled with ``call_soon`` after all
of them, handles the batch and answers every waiter. An idle server handles
each item alone, one loop turn later.

- ``GroupCommit``: the batch's reports share one transaction and one COMMIT
  (after the signature check, the largest fixed cost). Nobody gets a 200 before
  the commit holding their rows; a report is still all-or-nothing (a failed
  commit fails every report of its batch, whole). The connection is used only
  from the loop thread and no transaction spans an ``await``, so batches never
  overlap other writes.
- ``ParallelVerify``: Ed25519 checks run in one worker thread. libsodium runs
  without the GIL (cffi releases it), so the second core verifies while the
  loop thread parses and answers other requests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

from .store import Store

Item = TypeVar("Item")
MAX_BATCH = 256  # bounds one transaction / one thread job under a flood


class _Batcher(Generic[Item]):
    def __init__(self) -> None:
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self.batches = 0  # for tests and the curious

    async def submit(self, item: Item) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        elif len(self._pending) >= MAX_BATCH:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self.batches += 1
            self._run(batch)

    def _run(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        raise NotImplementedError

    @staticmethod
    def _settle(batch: list[tuple[Item, asyncio.Future]], results: Sequence[Any],
                error: Optional[BaseException]) -> None:
        for i, (_, future) in enumerate(batch):
            if future.done():  # the request was cancelled meanwhile
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(results[i])


class GroupCommit(_Batcher[list]):
    """``submit(rows)`` -> "stored" | "duplicate" | "conflict", once committed."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def _run(self, batch: list[tuple[list, asyncio.Future]]) -> None:
        try:
            outcomes = self.store.add_reports([rows for rows, _ in batch])
        except Exception as exc:  # rolled back: every report of the batch failed whole
            self._settle(batch, [], exc)
            return
        self._settle(batch, outcomes, None)


class ParallelVerify(_Batcher[tuple]):
    """``submit((public_key, signature, body, timestamp))`` -> bool, off the loop thread."""

    def __init__(self, verify: Callable[..., bool], executor: Executor) -> None:
        super().__init__()
        self.verify = verify
        self.executor = executor

    def _run(self, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        job = asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: [self.verify(*item) for item in items])
        job.add_done_callback(lambda done: self._settle(
            batch, [] if done.exception() else done.result(), done.exception()))
