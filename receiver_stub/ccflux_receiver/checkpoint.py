"""WAL checkpoints on a background thread instead of inside a request's COMMIT.

SQLite's automatic checkpoint runs in whichever COMMIT crosses 1000 WAL pages:
on the event loop, it costs about 45 us a commit on average and, with its fsync,
stalls every client for ~20 ms now and then (bench/receiver_load.py p99). While
the server runs, its connection has autocheckpoint off and this thread runs a
PASSIVE checkpoint every ``interval`` seconds on its own connection (SQLite
releases the GIL; WAL lets writers go on meanwhile), then a TRUNCATE one on stop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("ccflux_receiver")


class Checkpointer:
    def __init__(self, path: str, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ccflux-checkpoint", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(conn, "PASSIVE")
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            self.runs += 1
        except sqlite3.Error as exc:  # a busy database: the next round catches up
            log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
