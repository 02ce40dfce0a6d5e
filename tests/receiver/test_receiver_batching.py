"""Group commit: concurrent reports share a commit, every report is still stored
whole or not at all, and answered after the commit."""

from __future__ import annotations

import asyncio

import pytest
from ccflux.protocol import ReportBody
from ccflux_receiver import accounts
from ccflux_receiver.batching import GroupCommit
from ccflux_receiver.store import Store, report_rows
from support.receiver_app import report_body

NOW = 1_800_000_000


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "b.db"))
    accounts.add_user(s.conn, "a@example.com", NOW, 90)
    yield s
    s.close()


def _rows(session: str, device=None) -> list:
    return report_rows(1, device, ReportBody.model_validate_json(report_body(session=session)), NOW)


def test_reports_of_one_loop_turn_share_one_commit(store) -> None:
    writer = GroupCommit(store)

    async def run():
        return await asyncio.gather(*(writer.submit(_rows(f"s{i}")) for i in range(10)),
                                    writer.submit(_rows("s0")))

    outcomes = asyncio.run(run())
    assert outcomes == ["stored"] * 10 + ["duplicate"]
    assert writer.batches == 1
    assert store.conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 10


def test_a_failed_commit_fails_every_report_of_the_batch_and_stores_none(store) -> None:
    writer = GroupCommit(store)

    async def run():
        return await asyncio.gather(writer.submit(_rows("ok")), writer.submit(_rows("bad", device=999)),
                                    return_exceptions=True)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, Exception) for o in outcomes)
    assert store.conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0

    async def later():
        return await writer.submit(_rows("ok"))

    assert asyncio.run(later()) == "stored"  # the writer recovers


def test_many_concurrent_reports_through_the_app_are_all_stored(make_harness) -> None:
    from concurrent.futures import ThreadPoolExecutor as Pool

    harness = make_harness(rate_limit_per_minute=0)
    user = harness.user()
    bodies = [report_body(session=f"c{i}") for i in range(40)]
    with Pool(8) as pool:
        statuses = list(pool.map(lambda b: harness.report(user, b).status_code, bodies))
    assert statuses == [200] * 40
    assert len(harness.rows()) == 40
