import sqlite3

import pytest

from ccflux import state
from ccflux.state import Cursor, StateStore, Usage


@pytest.fixture
def store(state_dir):
    with StateStore.open() as s:
        yield s


def test_outbox_round_trip_and_dead_letters(store):
    with store.transaction():
        a = store.enqueue("s", 0, b'{"a":1}')
        b = store.enqueue("s", 1, b'{"b":2}')
    assert [i.id for i in store.outbox_pending()] == [a, b]
    assert store.outbox_count() == 2 and store.outbox_oldest_created_at() > 0
    store.note_attempt(a, "network down")
    assert store.outbox_pending()[0].attempts == 1
    store.move_to_dead(b, 400, "bad body")
    store.remove_outbox(a)
    assert store.outbox_count() == 0
    (dead,) = store.dead_letters()
    assert (dead.turn_index, dead.status, dead.reason, dead.body) == (1, 400, "bad body", b'{"b":2}')


def test_turn_indices_are_per_session_and_monotonic(store):
    with store.transaction():
        assert [store.next_turn_index("x", "t0") for _ in range(3)] == [0, 1, 2]
        assert store.next_turn_index("y", None) == 0
    assert store.session_start("x") == "t0"


def test_rollback_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.set_cursor("/p", "s", Cursor(1, 2, 3))
            store.set_counted("k", Usage("m", 1, 1, 1, 1))
            store.enqueue("s", 0, b"{}")
            raise RuntimeError("killed")
    assert store.cursor("/p") is None and store.counted(["k"]) == {} and store.outbox_count() == 0


def test_meta(store):
    store.set_meta("k", "v")
    assert store.get_meta("k") == "v"
    store.set_meta("k", None)
    assert store.get_meta("k") is None


def test_newer_schema_is_set_aside(state_dir):
    state_dir.mkdir(parents=True)
    with sqlite3.connect(state_dir / "state.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with StateStore.open() as s:
        assert s.outbox_count() == 0
    assert any(p.name.startswith("state.db.corrupt-") for p in state_dir.iterdir())


def test_pending_marker(state_dir):
    state.schedule_next_attempt(12345.0)
    marker = state_dir / state.PENDING_MARKER
    assert marker.stat().st_mtime == 12345.0 and (marker.stat().st_mode & 0o777) == 0o600
    state.clear_pending_marker()
    state.clear_pending_marker()
    assert not marker.exists()


def test_old_counted_keys_are_pruned_once_a_day(store):
    import time

    now = time.time()
    with store.transaction():
        store.set_counted("old", Usage("m", 1, 1, 1, 1))
        store.set_counted("new", Usage("m", 2, 2, 2, 2))
        store._conn.execute("UPDATE counted SET counted_at = ? WHERE key = 'old'",
                            (int(now - state.COUNTED_KEEP_SECS - 10),))
        assert store.prune_if_due(now) == 1
    assert set(store.counted(["old", "new"])) == {"new"}
    with store.transaction():
        store.set_counted("old2", Usage("m", 1, 1, 1, 1))
        store._conn.execute("UPDATE counted SET counted_at = 0 WHERE key = 'old2'")
        assert store.prune_if_due(now + 60) is None  # not due again within a day
