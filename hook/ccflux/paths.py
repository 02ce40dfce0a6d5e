"""Where ccflux keeps its state, and how files there are created.

Stdlib ``os`` only: this runs on every hook call. Every directory is created
0700 and every file 0600 *at creation* (``os.open`` with a mode, umask 077),
never chmod-after-write, so no file is ever readable by others, not even for
a moment.
"""

from __future__ import annotations

import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def state_dir() -> str:
    """$CCFLUX_HOME, else $CLAUDE_PLUGIN_DATA, else ${CLAUDE_CONFIG_DIR:-~/.claude}/ccflux."""
    env = os.environ
    explicit = env.get("CCFLUX_HOME") or env.get("CLAUDE_PLUGIN_DATA")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return default_state_dir()


def default_state_dir() -> str:
    return os.path.join(claude_config_dir(), "ccflux")


def command_state_dir() -> str:
    """The state dir for commands people run from a shell (`ccflux status`...).

    Under Claude Code the hook keeps its state in $CLAUDE_PLUGIN_DATA
    (``<config>/plugins/data/ccflux-<marketplace>``), which a shell does not
    have: find the plugin data dir the hook used most recently, so that the
    commands show and send what the hook queued.
    """
    if os.environ.get("CCFLUX_HOME") or os.environ.get("CLAUDE_PLUGIN_DATA"):
        return state_dir()
    candidates = []
    data = os.path.join(claude_config_dir(), "plugins", "data")
    try:
        with os.scandir(data) as entries:
            for entry in entries:
                if entry.name.startswith("ccflux-") and entry.is_dir():
                    used = _last_used(entry.path)
                    if used:
                        candidates.append((used, entry.path))
    except OSError:
        pass
    return max(candidates)[1] if candidates else default_state_dir()


def _last_used(directory: str) -> float:
    for name in ("state.db", "config.json", "activity.log"):
        try:
            return os.stat(os.path.join(directory, name)).st_mtime
        except OSError:
            continue
    return 0.0


def claude_config_dir() -> str:
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".claude")


def claude_account_file() -> str:
    """Claude Code's ``.claude.json`` (holds ``oauthAccount.emailAddress``)."""
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    if configured:
        return os.path.join(os.path.abspath(os.path.expanduser(configured)), ".claude.json")
    return os.path.join(os.path.expanduser("~"), ".claude.json")


def transcript_files(transcript_path: str, session_id: str) -> list[str]:
    """A session's main transcript and every subagent transcript
    (``<dir>/<session id>/subagents/*.jsonl``, CLAUDE_CODE.md)."""
    files = [transcript_path]
    sub = os.path.join(os.path.dirname(transcript_path), session_id, "subagents")
    try:
        with os.scandir(sub) as entries:
            files.extend(sorted(e.path for e in entries if e.name.endswith(".jsonl") and e.is_file()))
    except OSError:
        pass
    return files


def ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) 0700; tighten an existing one we own."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    st = os.stat(path)
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, DIR_MODE)
    return path


def in_state(*parts: str) -> str:
    return os.path.join(state_dir(), *parts)


def write_private(path: str, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``: temp file 0600, fsync, rename."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def read_small(path: str, limit: int = 1 << 20) -> bytes | None:
    """The bytes of a small file, or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
