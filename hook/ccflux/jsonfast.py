"""JSON for the hook's per-turn path, without importing ``json``.

``json`` imports ``re`` (and ``re`` enum, functools...): about 10 ms here, a
large share of a hook run. The C scanner and string encoder that ``json``
itself uses live in ``_json``; these few lines wire them up the same way.
Only the per-turn path uses this; everything else may use ``json``.
"""

from __future__ import annotations

import _json


class _Context:
    """The attributes ``_json.make_scanner`` reads (as ``json.JSONDecoder`` has)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"{name} is not JSON")


_scan = _json.make_scanner(_Context())
_WHITESPACE = " \t\n\r"


def raw_decode(text: str, start: int = 0) -> tuple[object, int]:
    """Decode one JSON value at ``start`` (leading whitespace allowed); (value, end).
    Raises ValueError (or RecursionError for absurd nesting)."""
    while start < len(text) and text[start] in _WHITESPACE:
        start += 1
    try:
        return _scan(text, start)
    except StopIteration:
        raise ValueError("not JSON" if text[start:].strip() else "empty") from None


def loads(data: bytes | str) -> object:
    """Like ``json.loads``: exactly one JSON value, else ValueError."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    value, end = raw_decode(text)
    if text[end:].strip(_WHITESPACE):
        raise ValueError("trailing data after the JSON value")
    return value


def dumps(value: object) -> str:
    """Compact ASCII JSON of str / int / bool / None / dict / list."""
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"jsonfast cannot encode {type(value).__name__}")
