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


_SUITES = ("build", "e2e", "hook", "receiver")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """A whole-suite run must collect every test directory: pytest silently skips
    directories it thinks are build output (tests/build once went missing that way)."""
    if config.args != [str(config.rootpath / "tests")] and config.args != config.getini("testpaths"):
        return  # a chosen subset
    seen = {part for item in items for part in item.path.relative_to(config.rootpath).parts[1:2]}
    missing = [name for name in _SUITES if name not in seen]
    if missing:
        raise pytest.UsageError(f"whole-suite run collected nothing from tests/{', tests/'.join(missing)}")
