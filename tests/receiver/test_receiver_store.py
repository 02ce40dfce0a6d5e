"""Schema migrations, token storage, idempotent reports, all-or-nothing writes."""

from __future__ import annotations

import sqlite3
import stat

import pytest
from ccflux.protocol import ReportBody
from ccflux_receiver import accounts, schema, security
from ccflux_receiver.store import MAX_LIVE_ACCESS_TOKENS, Store, report_rows
from support.receiver_app import report_body, usage

NOW = 1_800_000_000


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "r.db"))
    yield s
    s.close()


def _body(**kwargs) -> ReportBody:
    return ReportBody.model_validate_json(report_body(**kwargs))


def test_new_database_is_wal_private_and_at_the_latest_version(tmp_path) -> None:
    path = tmp_path / "new.db"
    conn = schema.connect(str(path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn.close()
    assert schema.migrate(schema.connect(str(path))) == schema.SCHEMA_VERSION  # again: no-op


def test_migrations_apply_in_order_from_any_version(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "m.db")
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    schema.connect(path).close()
    later = schema.MIGRATIONS + (("CREATE TABLE later (x INTEGER)",),)
    monkeypatch.setattr(schema, "MIGRATIONS", later)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    conn = schema.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.execute("SELECT x FROM later")


def test_newer_database_is_refused(tmp_path) -> None:
    path = str(tmp_path / "n.db")
    conn = schema.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(schema.SchemaError):
        schema.connect(path)


def test_tokens_are_stored_only_as_hashes(store) -> None:
    refresh = accounts.add_user(store.conn, "a@example.com", NOW, 90)
    cred = store.refresh_credential(security.token_hash(refresh), NOW)
    access, _ = store.exchange(cred, NOW, 3600, 90)
    dump = "\n".join(store.conn.iterdump())
    assert refresh not in dump and access not in dump
    assert refresh[7:] not in dump and access[7:] not in dump
    assert store.access_credential(security.token_hash(access), NOW) == cred


def test_exchange_purges_expired_access_tokens_and_caps_live_ones(store) -> None:
    refresh = accounts.add_user(store.conn, "a@example.com", NOW, 90)
    cred = store.refresh_credential(security.token_hash(refresh), NOW)
    store.exchange(cred, NOW, 60, 90)
    assert store.active_access_tokens(NOW) == 1
    store.exchange(cred, NOW + 61, 60, 90)  # the first one expired at NOW+60: purged
    assert store.conn.execute("SELECT COUNT(*) FROM access_tokens").fetchone()[0] == 1
    tokens = [store.exchange(cred, NOW + 100 + i, 3600, 90)[0] for i in range(MAX_LIVE_ACCESS_TOKENS + 4)]
    assert store.active_access_tokens(NOW + 200) == MAX_LIVE_ACCESS_TOKENS
    assert store.access_credential(security.token_hash(tokens[-1]), NOW + 200) == cred
    assert store.access_credential(security.token_hash(tokens[0]), NOW + 200) is None


def test_reissue_revokes_old_tokens_and_revoke_blocks_the_user(store) -> None:
    old = accounts.add_user(store.conn, "a@example.com", NOW, 90)
    cred = store.refresh_credential(security.token_hash(old), NOW)
    access, _ = store.exchange(cred, NOW, 3600, 90)
    new = accounts.reissue(store.conn, "A@example.com", NOW, 90)  # emails match case-insensitively
    assert store.refresh_credential(security.token_hash(old), NOW) is None
    assert store.access_credential(security.token_hash(access), NOW) is None
    assert store.refresh_credential(security.token_hash(new), NOW) is not None
    accounts.revoke_user(store.conn, "a@example.com", NOW)
    assert store.refresh_credential(security.token_hash(new), NOW) is None
    revived = accounts.reissue(store.conn, "a@example.com", NOW, 90)
    assert store.refresh_credential(security.token_hash(revived), NOW) is not None


def test_user_errors(store) -> None:
    accounts.add_user(store.conn, "a@example.com", NOW, 90)
    for call in (lambda: accounts.add_user(store.conn, "a@example.com", NOW, 90),
                 lambda: accounts.add_user(store.conn, "not an email", NOW, 90),
                 lambda: accounts.revoke_user(store.conn, "b@example.com", NOW),
                 lambda: accounts.reissue(store.conn, "b@example.com", NOW, 90)):
        with pytest.raises(LookupError):
            call()


def test_report_outcomes_first_write_wins(store) -> None:
    accounts.add_user(store.conn, "a@example.com", NOW, 90)
    assert store.add_report(1, None, _body(), NOW) == "stored"
    assert store.add_report(1, None, _body(), NOW + 5) == "duplicate"
    assert store.add_report(1, None, _body(models={"claude-x": usage(9, 9, 9, 9)}), NOW) == "conflict"
    assert store.conn.execute("SELECT input_tokens, received_at FROM reports").fetchall() == [(1, NOW)]


def test_report_keeps_its_time_and_the_arrival_time(store) -> None:
    accounts.add_user(store.conn, "a@example.com", NOW, 90)
    store.add_report(1, None, _body(session="a"), NOW)
    store.add_report(1, None, _body(session="b", timestamp_utc="garbage"), NOW)
    rows = store.conn.execute("SELECT session_id, turn_at, received_at FROM reports ORDER BY 1").fetchall()
    assert rows == [("a", 1_778_473_920, NOW), ("b", NOW, NOW)]


def test_a_failing_batch_writes_nothing(store) -> None:
    accounts.add_user(store.conn, "a@example.com", NOW, 90)
    good = report_rows(1, None, _body(session="good"), NOW)
    bad = report_rows(1, 999, _body(session="bad"), NOW)  # device 999 breaks a foreign key
    with pytest.raises(sqlite3.IntegrityError):
        store.add_reports([good, bad])
    assert store.conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0
    assert not store.conn.in_transaction


def test_same_session_ids_of_two_users_do_not_collide(store) -> None:
    accounts.add_user(store.conn, "a@example.com", NOW, 90)
    accounts.add_user(store.conn, "b@example.com", NOW, 90)
    assert store.add_report(1, None, _body(), NOW) == "stored"
    assert store.add_report(2, None, _body(models={"claude-x": usage(7, 7, 7, 7)}), NOW) == "stored"
    assert store.conn.execute("SELECT user_id, input_tokens FROM reports ORDER BY 1").fetchall() == [
        (1, 1), (2, 7)]
