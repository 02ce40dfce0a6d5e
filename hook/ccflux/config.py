"""Settings: the plugin's userConfig (environment) first, then config.json.

``CLAUDE_PLUGIN_OPTION_API_ENDPOINT`` / ``CLAUDE_PLUGIN_OPTION_API_TOKEN`` come
from the plugin's userConfig; ``config.json`` in the state dir (0600, written
by ``ccflux configure``) supplies what they do not, plus ``device_name`` and
``ignore_dirs``. The refresh token is held here and never printed.
"""

from __future__ import annotations

import os

from . import paths

CONFIG_FILE = "config.json"
ENV_ENDPOINT = "CLAUDE_PLUGIN_OPTION_API_ENDPOINT"
ENV_TOKEN = "CLAUDE_PLUGIN_OPTION_API_TOKEN"


class ConfigError(Exception):
    """config.json exists but cannot be used (corrupt, wrong types)."""


class Config:
    __slots__ = ("endpoint", "refresh_token", "device_name", "ignore_dirs", "source")

    def __init__(
        self,
        endpoint: str,
        refresh_token: str,
        device_name: str,
        ignore_dirs: tuple[str, ...] = (),
        source: str = "config.json",
    ) -> None:
        self.endpoint = endpoint
        self.refresh_token = refresh_token
        self.device_name = device_name
        self.ignore_dirs = ignore_dirs
        self.source = source

    def __repr__(self) -> str:  # never show the token
        return f"Config(endpoint={self.endpoint!r}, device_name={self.device_name!r}, source={self.source!r})"

    def ignores(self, cwd: str) -> bool:
        """True when ``cwd`` is one of ``ignore_dirs`` or below one."""
        if not cwd:
            return False
        here = os.path.realpath(cwd)
        for base in self.ignore_dirs:
            root = os.path.realpath(os.path.expanduser(base))
            if here == root or here.startswith(root.rstrip(os.sep) + os.sep):
                return True
        return False


def config_path() -> str:
    return paths.in_state(CONFIG_FILE)


def might_be_configured() -> bool:
    """Cheap check for the hot path: an env setting or a config.json exists."""
    if os.environ.get(ENV_ENDPOINT) or os.environ.get(ENV_TOKEN):
        return True
    for path in (config_path(), os.path.join(paths.default_state_dir(), CONFIG_FILE)):
        try:
            os.stat(path)
            return True
        except OSError:
            continue
    return False


def read_file() -> dict:
    """The raw config.json (``{}`` when absent). Raises ConfigError when unusable.

    When the state dir has none, the user-level one in the default state dir is
    used: `ccflux configure` run from a shell before the plugin ever ran writes
    there, while the hook under Claude Code lives in $CLAUDE_PLUGIN_DATA."""
    raw = paths.read_small(config_path())
    if raw is None:
        fallback = os.path.join(paths.default_state_dir(), CONFIG_FILE)
        raw = paths.read_small(fallback) if fallback != config_path() else None
    if raw is None:
        return {}
    from . import jsonfast  # json itself costs ~10 ms: this runs on every turn with news

    try:
        data = jsonfast.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"config.json is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError("config.json must hold a JSON object")
    return data


def load() -> Config | None:
    """The effective settings, or None when endpoint or token is missing."""
    data = read_file()
    endpoint = os.environ.get(ENV_ENDPOINT) or _text(data, "api_endpoint")
    token = os.environ.get(ENV_TOKEN) or _text(data, "api_token")
    if not endpoint or not token:
        return None
    source = "userConfig" if os.environ.get(ENV_ENDPOINT) else "config.json"
    device = _text(data, "device_name") or _host_name() or "unknown-device"
    ignore = data.get("ignore_dirs") or []
    if not isinstance(ignore, list) or not all(isinstance(d, str) for d in ignore):
        raise ConfigError("config.json: ignore_dirs must be a list of paths")
    return Config(endpoint.strip(), token.strip(), device[:255], tuple(ignore), source)


def save(updates: dict) -> None:
    """Merge ``updates`` into config.json, written atomically 0600."""
    import json

    data = read_file()
    data.update(updates)
    paths.ensure_dir(paths.state_dir())
    paths.write_private(config_path(), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def file_is_exposed() -> bool:
    """True when config.json is readable by group or others (status warns)."""
    try:
        return bool(os.stat(config_path()).st_mode & 0o077)
    except OSError:
        return False


def _host_name() -> str:
    if hasattr(os, "uname"):  # no socket import (~10 ms) on the per-turn path
        return os.uname().nodename
    import socket

    return socket.gethostname()


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"config.json: {key} must be a string")
    return value
