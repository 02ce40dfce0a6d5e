"""The device's Ed25519 key: created on first use, signs reports at send time,
registered with the receiver via POST {base}/register-key.

The private key is the raw 32-byte seed in ``signing_key`` (0600 from the
moment it exists). It never leaves this module: not in logs, errors or status.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import TYPE_CHECKING, Optional

from . import log, paths, transport, wire

if TYPE_CHECKING:
    import httpx
    from nacl.signing import SigningKey

KEY_FILE = "signing_key"
SEED_BYTES = 32
META_REGISTERED = "key_registered"


def key_path() -> str:
    return paths.in_state(KEY_FILE)


def load_or_create_key() -> "SigningKey":
    """This device's signing key, made (once, even when processes race) if missing."""
    from nacl.signing import SigningKey

    path = key_path()
    seed = _read_seed(path)
    if seed is None:
        seed = _create_seed(path)
    return SigningKey(seed)


def public_key_b64(key: "SigningKey") -> str:
    return base64.b64encode(bytes(key.verify_key)).decode("ascii")


def stored_public_key_b64() -> Optional[str]:
    """The public half of the stored key (for status), or None when there is no usable key."""
    seed = _read_seed(key_path(), quiet=True)
    if seed is None:
        return None
    from nacl.signing import SigningKey

    return public_key_b64(SigningKey(seed))


def sign(key: "SigningKey", body: bytes, timestamp: str) -> str:
    """The X-CCFLUX-Signature value over ``body``, newline, ``timestamp``."""
    signature = key.sign(wire.signed_message(body, timestamp)).signature
    return wire.signature_header(signature, bytes(key.verify_key))


def registration_tag(key: "SigningKey", base: str) -> str:
    """Meta value saying "this key is registered at this receiver"."""
    return f"{public_key_b64(key)}@{base}"


def ensure_registered(client: "httpx.Client", store, key: "SigningKey", base: str, access_token: str,
                      device_id: str, *, deadline: Optional[float] = None) -> bool:
    """Register the key unless meta says this key is registered at ``base``.

    Returns True when a request was made. 401/429/5xx surface as transport errors.
    """
    tag = registration_tag(key, base)
    if store.get_meta(META_REGISTERED) == tag:
        return False
    body = json.dumps({"public_key": public_key_b64(key), "device_id": device_id[: wire.MAX_DEVICE_ID]})
    headers = {**transport.bearer(access_token), "Content-Type": "application/json"}
    # 409 is how some receivers say "already registered": success either way.
    transport.post(client, f"{base}/register-key", content=body.encode(), headers=headers,
                   ok=(200, 409), deadline=deadline)
    store.set_meta(META_REGISTERED, tag)
    log.activity(f"key: registered device key {public_key_b64(key)[:12]}... as {device_id!r} at {base}")
    return True


def forget_registration(store) -> None:
    """The receiver says it does not know our key: register again before the next report."""
    store.set_meta(META_REGISTERED, None)


def _read_seed(path: str, quiet: bool = False) -> Optional[bytes]:
    seed = paths.read_small(path, limit=SEED_BYTES + 1)
    if seed is None:
        return None
    if len(seed) == SEED_BYTES:
        return seed
    if quiet:
        return None
    # A damaged key cannot sign anything the receiver accepts: keep it for a person to
    # look at, and start over with a new key (it registers like a new device).
    aside = f"{path}.corrupt.{int(time.time())}"
    try:
        os.replace(path, aside)
    except OSError:
        pass
    log.error(f"key: {path} had {len(seed)} bytes, not {SEED_BYTES}; set aside as {aside}, making a new key")
    return None


def _create_seed(path: str) -> bytes:
    """Write a fresh seed so that no reader ever sees a partial or world-readable key.

    The seed goes to a private temp file first (O_EXCL, 0600, fsync), then is
    hard-linked to its final name: link() never replaces an existing file, so
    when two processes race exactly one key wins and the loser reads it.
    """
    paths.ensure_dir(os.path.dirname(path))
    seed = os.urandom(SEED_BYTES)
    tmp = f"{path}.new.{os.getpid()}.{time.monotonic_ns()}"
    _write_new_file(tmp, seed)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made the key first: use theirs
    except OSError:
        # No hard links here (some filesystems): O_EXCL on the final name still
        # guarantees one winner; a reader that catches it half-written retries below.
        try:
            _write_new_file(path, seed)
        except FileExistsError:
            pass
    finally:
        _unlink_quietly(tmp)
    return _read_settled_seed(path)


def _read_settled_seed(path: str) -> bytes:
    for _ in range(50):  # the winner's write is 32 bytes: it settles within microseconds
        seed = paths.read_small(path, limit=SEED_BYTES + 1)
        if seed is not None and len(seed) == SEED_BYTES:
            return seed
        time.sleep(0.01)
    raise transport.CcfluxError(f"the device key file {path} is unusable")


def _write_new_file(path: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, paths.FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
