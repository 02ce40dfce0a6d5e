from hypothesis import given, settings
from hypothesis import strategies as st

from ccflux import protocol, report
from ccflux.state import Usage
from ccflux.wire import MAX_MODELS, MAX_TOKEN_COUNT

counts = st.integers(min_value=0, max_value=MAX_TOKEN_COUNT)
models = st.dictionaries(
    st.text(min_size=1, max_size=128),
    st.tuples(counts, counts, counts, counts),
    min_size=1, max_size=MAX_MODELS,
)


@settings(max_examples=200, deadline=None)
@given(
    session=st.text(alphabet="abcdef0123456789-_", min_size=1, max_size=64),
    turn=st.integers(min_value=0, max_value=MAX_TOKEN_COUNT),
    email=st.text(max_size=100),
    ts=st.text(max_size=80),
    start=st.one_of(st.none(), st.text(min_size=1, max_size=80)),
    usage=models,
)
def test_every_body_the_hook_builds_is_a_valid_v1_report(session, turn, email, ts, start, usage):
    m = {name: Usage(name, *c) for name, c in usage.items()}
    raw = report.body(session, turn, email, ts, start, m)
    parsed = protocol.ReportBody.model_validate_json(raw)
    assert parsed.turn_index == turn and parsed.session_id == session
    assert {k: (v.input_tokens, v.output_tokens, v.cache_read_tokens, v.cache_write_tokens)
            for k, v in parsed.models.items()} == usage


def test_body_fields_are_exactly_the_protocol_fields():
    import json

    raw = report.body("s", 0, "a@b.c", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z",
                      {"m": Usage("m", 1, 2, 3, 4)})
    doc = json.loads(raw)
    assert set(doc) == set(protocol.ReportBody.model_fields)
    assert set(doc["models"]["m"]) == set(protocol.ModelUsage.model_fields)


def test_more_than_twenty_models_split_into_several_reports():
    many = {f"m{i}": Usage(f"m{i}", 1, 1, 1, 1) for i in range(45)}
    chunks = report.split_models(many)
    assert [len(c) for c in chunks] == [20, 20, 5]
    assert set().union(*chunks) == set(many)


def test_user_email_from_claude_json(state_dir, tmp_path, monkeypatch):
    from ccflux.state import StateStore

    cfg = tmp_path / "claude-config"
    cfg.mkdir()
    (cfg / ".claude.json").write_text('{"oauthAccount": {"emailAddress": "dev@example.com"}}')
    with StateStore.open() as store:
        assert report.user_email(store) == "dev@example.com"
        (cfg / ".claude.json").write_text('{"oauthAccount": {}, "x": 1}')
        assert report.user_email(store) == ""
