"""Shared fixtures. ``receiver`` is a real `ccflux-receiver serve` over TLS."""

from __future__ import annotations

import pytest
from support.receiver import ReceiverProcess, TestCA


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def receiver(tmp_path, test_ca: TestCA):
    rx = ReceiverProcess(tmp_path / "receiver", test_ca)
    rx.start()
    try:
        yield rx
    finally:
        rx.stop()
