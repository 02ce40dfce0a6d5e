"""Receiver settings: the environment variables of PROTOCOL.md, overridable by flags."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    database_path: str = "ccflux.db"
    listen_addr: str = "127.0.0.1:8080"
    access_token_expiry_secs: int = 28800
    refresh_token_rolling_days: int = 90
    rate_limit_per_minute: int = 30  # 0 switches the limiter off
    body_limit_kb: int = 64
    require_signatures: bool = False
    admin_token: Optional[str] = None  # unset: the admin view answers 404
    cookie_secure: bool = False

    @property
    def body_limit_bytes(self) -> int:
        return self.body_limit_kb * 1024

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen_addr)

    def replace(self, **changes: object) -> "Settings":
        """A copy with the non-None ``changes`` applied (flags override env)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **given)  # type: ignore[arg-type]


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"LISTEN_ADDR must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 0 or 1, got {raw!r}")


def from_env(env: Optional[Mapping[str, str]] = None) -> Settings:
    env = os.environ if env is None else env
    settings = Settings(
        database_path=env.get("DATABASE_PATH", "").strip() or Settings.database_path,
        listen_addr=env.get("LISTEN_ADDR", "").strip() or Settings.listen_addr,
        access_token_expiry_secs=_int(env, "ACCESS_TOKEN_EXPIRY_SECS", 28800, 60),
        refresh_token_rolling_days=_int(env, "REFRESH_TOKEN_ROLLING_DAYS", 90, 1),
        rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 30, 0),
        body_limit_kb=_int(env, "BODY_LIMIT_KB", 64, 1),
        require_signatures=_flag(env, "REQUIRE_SIGNATURES"),
        admin_token=env.get("ADMIN_TOKEN") or None,
        cookie_secure=_flag(env, "COOKIE_SECURE"),
    )
    settings.host_port  # validate early
    return settings
