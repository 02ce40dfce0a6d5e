"""Run the sender in a process that outlives the hook; return at once.

The hook must never wait for the network, and `claude -p` ends the hook's
process group when it exits. POSIX: double fork. The middle child leaves the
hook's session (setsid) and points fds 0-2 at /dev/null — Claude Code waits
for the hook's pipes to close, ~0.5 s more per turn when they stay open — then
forks the sender and exits; the hook reaps it within milliseconds.

Only os is imported here: the sender's modules (httpx, nacl, filelock...) are
imported in the grandchild, so the hook itself never pays for them.
"""

from __future__ import annotations

import os

DETACHED_BUDGET_S = 20.0  # nobody waits for it, but it stays bounded
INLINE_BUDGET_S = 3.0  # blocks the caller: a few seconds at most


def spawn_sender(budget_s: float = DETACHED_BUDGET_S) -> None:
    """Drain the spool in a detached process (inline, briefly, without fork)."""
    if not hasattr(os, "fork"):
        _drain(INLINE_BUDGET_S)
        return
    try:
        pid = os.fork()
    except OSError as exc:
        from . import log

        log.error(f"send: cannot fork a sender ({exc.strerror}); sending inline")
        _drain(INLINE_BUDGET_S)
        return
    if pid == 0:
        _middle_child(budget_s)  # never returns
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _middle_child(budget_s: float) -> None:
    try:
        os.setsid()
        _stdio_to_devnull()
        if os.fork() == 0:
            _drain(budget_s, background=True)
    except BaseException as exc:  # nothing may escape into the hook's code path
        try:
            from . import log

            log.error(f"send: detached sender failed: {exc.__class__.__name__}: {log.redact(str(exc))}")
        except BaseException:
            pass
    finally:
        os._exit(0)  # skip the parent's atexit handlers and buffered stdio


def _drain(budget_s: float, background: bool = False) -> None:
    if background and hasattr(os, "nice"):
        try:  # the user's session comes first: on a busy machine the sender yields the CPU
            os.nice(10)
        except OSError:
            pass
    from . import sender

    sender.drain(budget_s)


def _stdio_to_devnull() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
