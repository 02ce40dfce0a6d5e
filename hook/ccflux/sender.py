"""Drain the outbox: sign each queued report at send time and POST it.

One sender at a time (``send.lock``). A report leaves the spool only on a 200
(or, for a 400/413 that can never succeed, into the dead letters). Everything
else keeps it, and the answer decides when to try again (PROTOCOL.md):

    401            exchange the token once, resend
    403 stale      correct the clock offset from ``Date``, re-sign once, resend
    403 not-reg.   register the key again, resend
    403 revoked    stop sending (status says so) until ``ccflux flush``
    403 other      log, keep, stop; back off
    429            stop until Retry-After
    5xx / network  back off 30 s, doubling to 15 min

httpx, nacl and filelock are imported only when a drain runs, so that the hook
can fork a detached sender without paying for them itself.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Callable, Optional

from . import auth, config, detach, log, paths, signing, state, transport, wire

if TYPE_CHECKING:
    import httpx

SEND_LOCK = "send.lock"
ENV_SEND_MODE = "CCFLUX_SEND_MODE"  # detached (default) | inline | none
INLINE_BUDGET_S = detach.INLINE_BUDGET_S
DETACHED_BUDGET_S = detach.DETACHED_BUDGET_S
LOCK_WAIT_S = 2.0  # a sender finishing up re-reads the outbox, but it may just have done so
MIN_REQUEST_S = 0.5  # do not start a report with less budget left: a budget timeout is no failure
BATCH = 50
BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 15 * 60.0
DEFAULT_RETRY_AFTER_S = 60.0

KEY_REVOKED_MESSAGE = ("IT revoked this device's key: sending stopped, reports are kept; "
                       "ask IT, then run `ccflux flush`")
META_FAILURES = "consecutive_failures"
META_RATE_LIMITED_UNTIL = "rate_limited_until"
NOT_CONFIGURED = "not configured"

Progress = Callable[[str], None]


class DrainResult:
    """What one drain did. ``stopped`` is why it ended early ("" when the outbox emptied)."""

    __slots__ = ("sent", "dead", "remaining", "stopped", "retry_at", "rate_limited", "transient")

    def __init__(self) -> None:
        self.sent = 0
        self.dead = 0
        self.remaining = 0
        self.stopped = ""
        self.retry_at: Optional[float] = None  # epoch before which retrying is pointless
        self.rate_limited = False
        self.transient = False  # a network error or 5xx: worth another try soon

    def __repr__(self) -> str:
        return (f"DrainResult(sent={self.sent}, dead={self.dead}, remaining={self.remaining}, "
                f"stopped={self.stopped!r}, retry_at={self.retry_at}, rate_limited={self.rate_limited}, "
                f"transient={self.transient})")


def drain(budget_s: float = INLINE_BUDGET_S, progress: Optional[Progress] = None, *, force: bool = False,
          lock_wait_s: float = LOCK_WAIT_S,
          http_transport: Optional["httpx.BaseTransport"] = None) -> DrainResult:
    """Send what the outbox holds, within ``budget_s`` seconds.

    ``force`` (``ccflux flush``) also retries after a revoked key or a rejected
    refresh token. ``http_transport`` replaces the network (tests).
    """
    from filelock import FileLock, Timeout

    deadline = time.monotonic() + budget_s
    result = DrainResult()
    paths.ensure_dir(paths.state_dir())
    lock = FileLock(paths.in_state(SEND_LOCK), mode=paths.FILE_MODE)
    try:
        # acquire tries at once, then polls until the bounded wait is over
        lock.acquire(timeout=max(0.0, min(lock_wait_s, deadline - time.monotonic())))
    except Timeout:
        result.stopped = "another ccflux process is sending"
        return result
    try:
        _drain_locked(result, deadline, progress, force, http_transport)
    finally:
        lock.release()
    return result


def drain_detached(budget_s: float = DETACHED_BUDGET_S) -> None:
    """Start a drain that outlives the caller and return at once (see detach.py);
    CCFLUX_SEND_MODE=inline drains here, =none does nothing."""
    mode = os.environ.get(ENV_SEND_MODE, "detached").strip().lower()
    if mode == "none":
        return
    if mode == "inline":
        drain(INLINE_BUDGET_S)
        return
    from . import detach

    detach.spawn_sender(budget_s)


def _drain_locked(result: DrainResult, deadline: float, progress: Optional[Progress], force: bool,
                  http_transport: Optional["httpx.BaseTransport"]) -> None:
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        log.error(f"send: {exc}")
        result.stopped = str(exc)
        return
    if cfg is None:
        result.stopped = NOT_CONFIGURED
        return
    try:
        with state.StateStore.open() as store:
            _Drain(cfg, store, deadline, progress, force, result).run(http_transport)
            result.remaining = store.outbox_count()
            if result.remaining == 0:
                state.clear_pending_marker()
                if store.outbox_count():  # a hook committed meanwhile: keep its report due
                    state.schedule_next_attempt(time.time())
    except (OSError, sqlite3.Error) as exc:  # the spool is untouched; the next run tries again
        log.error(f"send: state store unavailable: {exc.__class__.__name__}: {exc}")
        result.stopped = f"state store unavailable ({exc.__class__.__name__})"


class _Drain:
    """One drain's context: client, token, key and clock offset, and the rules above."""

    def __init__(self, cfg: "config.Config", store: state.StateStore, deadline: float,
                 progress: Optional[Progress], force: bool, result: DrainResult) -> None:
        self.cfg = cfg
        self.store = store
        self.deadline = deadline
        self.progress = progress or (lambda line: None)
        self.force = force
        self.result = result
        self.base = wire.base_url(cfg.endpoint)
        self.offset = _float(store.get_meta("clock_offset_secs"))
        self.client: Optional["httpx.Client"] = None
        self.token = ""
        self.key = None
        self.exchanged = False  # one forced exchange per drain: a second 401 is not a stale token
        self.flags_to_clear = [k for k in ("auth_failed", "key_revoked") if store.get_meta(k)]

    def run(self, http_transport: Optional["httpx.BaseTransport"]) -> None:
        if self.store.outbox_count() == 0:
            return
        if not self.force and "key_revoked" in self.flags_to_clear:
            self.result.stopped = KEY_REVOKED_MESSAGE
            return
        until = _float(self.store.get_meta(META_RATE_LIMITED_UNTIL))
        if until > time.time():  # honour Retry-After even when a new turn asks to send
            self.result.retry_at, self.result.rate_limited = until, True
            self.result.stopped = f"rate limited by the receiver; retry in {until - time.time():.0f} s"
            return
        if not os.path.exists(paths.in_state(state.PENDING_MARKER)):
            # Say "reports pending" before trying: if this process dies mid-send,
            # the next hook run's no-news path still retries the spool.
            state.schedule_next_attempt(time.time())
        item = None
        try:
            transport.check_url(self.base)
            with transport.open_client(http_transport) as self.client:
                self.key = signing.load_or_create_key()
                self._ensure_token()
                self._authorized(self._ensure_registered)
                while True:
                    batch = self.store.outbox_pending(BATCH)  # re-read: hooks keep committing
                    if not batch:
                        return
                    for item in batch:
                        if self.deadline - time.monotonic() < MIN_REQUEST_S:
                            self.result.stopped = "time budget used up; the rest waits for the next run"
                            return
                        self._send_one(item)
                    item = None
        except transport.CcfluxError as exc:
            self._stop(exc, item)

    # -- tokens and registration ------------------------------------------

    def _ensure_token(self, force: bool = False) -> None:
        self.token = auth.access_token(self.client, self.cfg, self.base, force=force,
                                       retry_rejected=self.force, clock_offset=self.offset,
                                       deadline=self.deadline)
        if "auth_failed" in self.flags_to_clear:
            self.flags_to_clear.remove("auth_failed")
            self.store.set_meta("auth_failed", None)
            if self.store.get_meta("last_error") == auth.REJECTED_MESSAGE:
                self.store.set_meta("last_error", None)

    def _ensure_registered(self) -> None:
        signing.ensure_registered(self.client, self.store, self.key, self.base, self.token,
                                  self.cfg.device_name, deadline=self.deadline)

    def _authorized(self, call: Callable[[], None]) -> None:
        """``call``, and after a 401 once more with a freshly exchanged token."""
        try:
            call()
        except transport.UnauthorizedError:
            if self.exchanged:
                raise
            self.exchanged = True
            self._ensure_token(force=True)
            call()

    # -- one report ----------------------------------------------------------

    def _send_one(self, item: state.OutboxItem) -> None:
        corrected: set[str] = set()  # each 403 remedy at most once per report
        while True:
            try:
                self._authorized(lambda: self._post_report(item))
            except transport.ForbiddenError as exc:
                if exc.code in corrected or not self._remedy(exc):
                    raise
                corrected.add(exc.code)
                continue
            except transport.RejectedError as exc:
                self._bury(item, exc)
                return
            self._accepted(item)
            return

    def _post_report(self, item: state.OutboxItem) -> None:
        # Signed now, not when queued: a report that waited days is still fresh.
        timestamp = wire.format_timestamp(time.time() + self.offset)
        headers = {**transport.bearer(self.token), "Content-Type": "application/json",
                   wire.TIMESTAMP_HEADER: timestamp,
                   wire.SIGNATURE_HEADER: signing.sign(self.key, item.body, timestamp)}
        transport.post(self.client, f"{self.base}/report", content=item.body, headers=headers,
                       deadline=self.deadline)

    def _remedy(self, exc: transport.ForbiddenError) -> bool:
        """Fix what a 403 says can be fixed here; False when it cannot."""
        if exc.code == wire.ErrorCode.TIMESTAMP_STALE.value and exc.clock_offset is not None:
            self.offset = round(exc.clock_offset)
            self.store.set_meta("clock_offset_secs", str(self.offset))
            log.activity(f"send: receiver clock differs by {self.offset} s; re-signing with it")
            return True
        if exc.code == wire.ErrorCode.KEY_NOT_REGISTERED.value:
            signing.forget_registration(self.store)
            self._authorized(self._ensure_registered)
            return True
        return False

    def _accepted(self, item: state.OutboxItem) -> None:
        with self.store.transaction():  # one commit (one fsync) per report
            self.store.remove_outbox(item.id)
            self.store.set_meta("last_success_at", str(time.time()))
            self.store.set_meta(META_FAILURES, None)
            if "key_revoked" in self.flags_to_clear:
                self.flags_to_clear.remove("key_revoked")
                self.store.set_meta("key_revoked", None)
        self.result.sent += 1
        log.activity(f"send: report {item.session_id}#{item.turn_index} accepted")
        self.progress(f"sent {item.session_id} turn {item.turn_index}")

    def _bury(self, item: state.OutboxItem, exc: transport.HTTPStatusError) -> None:
        reason = "receiver rejected the report as malformed" if exc.status == 400 else "report too large"
        self.store.move_to_dead(item.id, exc.status, reason)
        self.result.dead += 1
        self._record_error(f"report {item.session_id}#{item.turn_index} answered {exc.status}: "
                           f"{reason}; kept as a dead letter (see `ccflux status`)")
        self.progress(f"dead letter: {item.session_id} turn {item.turn_index} ({exc.status})")

    # -- stopping ------------------------------------------------------------

    def _stop(self, exc: transport.CcfluxError, item: Optional[state.OutboxItem]) -> None:
        """Record why sending stops here and when it may resume; the spool is kept."""
        message = str(exc)
        if isinstance(exc, transport.AuthError):
            self.store.set_meta("auth_failed", "1")
            self._resume_at(time.time() + BACKOFF_MAX_S)  # a person must act: no retry on idle turns
        elif isinstance(exc, transport.ForbiddenError) and exc.code == wire.ErrorCode.KEY_REVOKED.value:
            self.store.set_meta("key_revoked", "1")
            self._resume_at(time.time() + BACKOFF_MAX_S)
            message = KEY_REVOKED_MESSAGE
        elif isinstance(exc, transport.RateLimitedError):
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
            self.store.set_meta(META_RATE_LIMITED_UNTIL, str(time.time() + wait))
            self._resume_at(time.time() + wait, rate_limited=True)
            log.activity(f"send: rate limited by the receiver; next try in {wait:.0f} s")
            self.result.stopped = f"rate limited by the receiver; retry in {wait:.0f} s"
            return
        elif not isinstance(exc, transport.ConfigurationError):
            message = self._back_off(exc, item)
        self.result.stopped = self._record_error(message)

    def _back_off(self, exc: transport.CcfluxError, item: Optional[state.OutboxItem]) -> str:
        if isinstance(exc, transport.ForbiddenError):
            hint = {"timestamp-stale": "clock could not be corrected",
                    "signature-invalid": "signature rejected",
                    "signature-required": "receiver wants a signature (a ccflux bug)",
                    "timestamp-missing": "receiver saw no timestamp (a ccflux bug)",
                    "key-not-registered": "key still unknown after registering"}.get(exc.code, "forbidden")
            message = f"{exc}: {hint}; reports kept"
        else:
            message = f"{exc}; reports kept"
            self.result.transient = isinstance(exc, (transport.TransportError, transport.ServerError))
        if item is not None:
            self.store.note_attempt(item.id, message)
        failures = int(_float(self.store.get_meta(META_FAILURES))) + 1
        self.store.set_meta(META_FAILURES, str(failures))
        delay = min(BACKOFF_FIRST_S * 2 ** min(failures - 1, 16), BACKOFF_MAX_S)
        self._resume_at(time.time() + delay)
        return f"{message}; next automatic try in {delay:.0f} s"

    def _record_error(self, message: str) -> str:
        """last_error for `ccflux status`, and the error log; secrets masked twice over."""
        message = log.redact(message, self.cfg.refresh_token, self.token)[:500]
        self.store.set_meta("last_error", message)
        self.store.set_meta("last_error_at", str(time.time()))
        log.error(f"send: {message}")
        return message

    def _resume_at(self, epoch: float, rate_limited: bool = False) -> None:
        state.schedule_next_attempt(epoch)
        self.result.retry_at = epoch
        self.result.rate_limited = rate_limited


def _float(text: Optional[str]) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0
