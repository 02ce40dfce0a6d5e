"""Fixtures of the receiver tests: ``harness`` (default settings) and
``make_harness(**settings)``; both in-process (see support/receiver_app.py)."""

from __future__ import annotations

from typing import Any

import pytest
from support.receiver_app import Harness


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    with h.client:
        yield h


@pytest.fixture
def make_harness(tmp_path):
    """Harness factory for non-default settings; each started, closed after the test."""
    made = []

    def make(**settings: Any) -> Harness:
        h = _fresh(tmp_path, len(made), settings)
        h.client.__enter__()
        made.append(h)
        return h

    yield make
    for h in made:
        h.client.__exit__(None, None, None)


def _fresh(tmp_path, n: int, settings: dict) -> Harness:
    path = tmp_path / f"h{n}"
    path.mkdir()
    return Harness(path, **settings)
