"""Admin CLI: users, devices, usage; settings from the environment."""

from __future__ import annotations

import json

import pytest
from ccflux.protocol import ReportBody
from ccflux_receiver import cli, settings
from support.receiver_app import Harness, report_body, usage

ENV = ("DATABASE_PATH", "LISTEN_ADDR", "ACCESS_TOKEN_EXPIRY_SECS", "REFRESH_TOKEN_ROLLING_DAYS",
       "RATE_LIMIT_PER_MINUTE", "BODY_LIMIT_KB", "REQUIRE_SIGNATURES", "ADMIN_TOKEN", "COOKIE_SECURE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_add_prints_the_token_alone_once(tmp_path, capsys) -> None:
    db = str(tmp_path / "c.db")
    code, out, err = run(capsys, "users", "add", "a@example.com", "--db", db)
    assert code == 0 and out.count("\n") == 1 and out.startswith("ccf_rt_")
    assert "a@example.com" in err and out.strip() not in err
    code, out, err = run(capsys, "users", "add", "a@example.com", "--db", db)
    assert code == 1 and out == "" and "exists" in err


def test_users_list_revoke_reissue(tmp_path, capsys) -> None:
    db = str(tmp_path / "c.db")
    run(capsys, "users", "add", "a@example.com", "--db", db)
    run(capsys, "users", "add", "b@example.com", "--db", db)
    assert run(capsys, "users", "revoke", "b@example.com", "--db", db)[0] == 0
    code, out, _ = run(capsys, "users", "list", "--db", db)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["EMAIL", "STATE"]
    assert lines[1].split()[:2] == ["a@example.com", "active"]
    assert lines[2].split()[:2] == ["b@example.com", "revoked"]
    code, out, _ = run(capsys, "users", "reissue", "b@example.com", "--db", db)
    assert code == 0 and out.startswith("ccf_rt_") and out.count("\n") == 1
    assert "ccf_" not in run(capsys, "users", "list", "--db", db)[1]
    assert run(capsys, "users", "revoke", "nobody@example.com", "--db", db)[0] == 1


def test_database_path_comes_from_the_environment(tmp_path, capsys, monkeypatch) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("DATABASE_PATH", str(db))
    assert run(capsys, "users", "add", "a@example.com")[0] == 0
    assert db.exists()


def _populated(tmp_path) -> Harness:
    h = Harness(tmp_path)
    with h.client:
        a, b = h.user("a@example.com"), h.user("b@example.com")
        h.report(a, report_body(session="s1", turn=0, models={"opus": usage(1, 2, 3, 4), "haiku": usage(10, 0, 0, 0)}))
        h.report(a, report_body(session="s1", turn=1, models={"opus": usage(5, 5, 5, 5)}))
        h.report(b, report_body(session="s2", turn=0, timestamp_utc="2026-05-12T10:00:00Z",
                                models={"opus": usage(100, 0, 0, 0)}))
        h.report(b, report_body(session="s3", turn=0, timestamp_utc="2026-05-12T11:00:00Z"), sign=False)
    return h


def test_usage_json_by_user_and_model(tmp_path, capsys) -> None:
    h = _populated(tmp_path)
    code, out, _ = run(capsys, "usage", "--json", "--db", h.settings.database_path)
    assert code == 0
    assert json.loads(out) == [
        {"user": "a@example.com", "model": "haiku", "input_tokens": 10, "output_tokens": 0,
         "cache_read_tokens": 0, "cache_write_tokens": 0, "reports": 1},
        {"user": "a@example.com", "model": "opus", "input_tokens": 6, "output_tokens": 7,
         "cache_read_tokens": 8, "cache_write_tokens": 9, "reports": 2},
        {"user": "b@example.com", "model": "claude-x", "input_tokens": 1, "output_tokens": 2,
         "cache_read_tokens": 3, "cache_write_tokens": 4, "reports": 1},
        {"user": "b@example.com", "model": "opus", "input_tokens": 100, "output_tokens": 0,
         "cache_read_tokens": 0, "cache_write_tokens": 0, "reports": 1},
    ]


def test_usage_counts_reports_not_rows(tmp_path, capsys) -> None:
    h = _populated(tmp_path)
    rows = json.loads(run(capsys, "usage", "--by", "user", "--json", "--db", h.settings.database_path)[1])
    assert [(r["user"], r["reports"], r["input_tokens"]) for r in rows] == [
        ("a@example.com", 2, 16), ("b@example.com", 2, 101)]


def test_usage_by_every_key_and_since(tmp_path, capsys) -> None:
    h = _populated(tmp_path)
    db = h.settings.database_path
    rows = json.loads(run(capsys, "usage", "--by", "day,device,session,turn", "--json", "--db", db)[1])
    assert {tuple(r) for r in rows} == {("day", "device", "session_id", "turn_index", "input_tokens",
                                         "output_tokens", "cache_read_tokens", "cache_write_tokens", "reports")}
    assert [(r["day"], r["device"], r["session_id"], r["turn_index"]) for r in rows] == [
        ("2026-05-11", "dev-1", "s1", 0), ("2026-05-11", "dev-1", "s1", 1),
        ("2026-05-12", None, "s3", 0), ("2026-05-12", "dev-1", "s2", 0)]
    since = json.loads(run(capsys, "usage", "--by", "session", "--since", "2026-05-12", "--json", "--db", db)[1])
    assert [r["session_id"] for r in since] == ["s2", "s3"]
    since = json.loads(run(capsys, "usage", "--by", "session", "--since", "2026-05-12T10:30:00Z",
                           "--json", "--db", db)[1])
    assert [r["session_id"] for r in since] == ["s3"]


def test_usage_table(tmp_path, capsys) -> None:
    h = _populated(tmp_path)
    code, out, _ = run(capsys, "usage", "--by", "user", "--db", h.settings.database_path)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["USER", "INPUT_TOKENS", "OUTPUT_TOKENS", "CACHE_READ_TOKENS",
                                              "CACHE_WRITE_TOKENS", "REPORTS"]
    assert lines[1].split() == ["a@example.com", "16", "7", "8", "9", "2"]


def test_usage_bad_arguments(tmp_path, capsys) -> None:
    db = str(tmp_path / "c.db")
    assert run(capsys, "usage", "--by", "user,color", "--db", db)[0] == 2
    assert run(capsys, "usage", "--since", "last tuesday", "--db", db)[0] == 2


def test_usage_survives_sums_past_64_bits(tmp_path, capsys) -> None:
    h = Harness(tmp_path)
    big = 2**53 - 1
    with h.client:
        h.user()
        for turn in range(1100):  # 1100 * (2**53 - 1) > 2**63
            body = ReportBody.model_validate_json(report_body(turn=turn, models={"m": usage(big, 0, 0, 0)}))
            h.store.add_report(1, None, body, int(h.now))
    code, out, err = run(capsys, "usage", "--json", "--db", h.settings.database_path)
    assert code == 0 and "approximately" in err
    assert json.loads(out)[0]["input_tokens"] > 2**62


def test_devices_list_and_revoke(tmp_path, capsys) -> None:
    h = Harness(tmp_path)
    with h.client:
        a = h.user("a@example.com")
        h.register(a.access, h.user("b@example.com", register=False).public_key, "other-laptop")
        h.report(a)
    db = h.settings.database_path
    code, out, _ = run(capsys, "devices", "list", "--db", db)
    assert code == 0 and a.public_key in out and "other-laptop" in out and "active" in out
    assert run(capsys, "devices", "revoke", "other-laptop", "--db", db)[0] == 0
    assert run(capsys, "devices", "revoke", a.public_key, "--db", db)[0] == 0
    assert run(capsys, "devices", "revoke", a.public_key, "--db", db)[0] == 1  # nothing left to revoke
    assert "active" not in run(capsys, "devices", "list", "--db", db)[1].splitlines()[1]


def test_settings_from_env_and_their_errors() -> None:
    s = settings.from_env({"LISTEN_ADDR": "0.0.0.0:9000", "REQUIRE_SIGNATURES": "1", "BODY_LIMIT_KB": "8",
                           "RATE_LIMIT_PER_MINUTE": "0", "ADMIN_TOKEN": "x" * 20, "COOKIE_SECURE": "true"})
    assert s.host_port == ("0.0.0.0", 9000) and s.require_signatures and s.body_limit_bytes == 8192
    assert s.rate_limit_per_minute == 0 and s.admin_token and s.cookie_secure
    assert settings.from_env({}) == settings.Settings()
    assert settings.from_env({}).host_port == ("127.0.0.1", 8080)
    for bad in ({"LISTEN_ADDR": "nope"}, {"BODY_LIMIT_KB": "0"}, {"REQUIRE_SIGNATURES": "maybe"},
                {"ACCESS_TOKEN_EXPIRY_SECS": "soon"}):
        with pytest.raises(settings.SettingsError):
            settings.from_env(bad)


def test_bad_settings_exit_2_with_a_message(capsys, monkeypatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "lots")
    code, out, err = run(capsys, "users", "list", "--db", "/nonexistent/x.db")
    assert code == 2 and "RATE_LIMIT_PER_MINUTE" in err


def test_serve_flags_override_the_environment() -> None:
    env = settings.from_env({"REQUIRE_SIGNATURES": "1", "BODY_LIMIT_KB": "8", "LISTEN_ADDR": "127.0.0.1:9001",
                             "DATABASE_PATH": "env.db"})
    parse = cli.build_parser(env).parse_args
    s = cli.serve_settings(parse(["serve"]), env)
    assert (s.require_signatures, s.body_limit_kb, s.host_port, s.database_path) == (
        True, 8, ("127.0.0.1", 9001), "env.db")
    s = cli.serve_settings(parse(["serve", "--no-require-signatures", "--body-limit-kb", "2",
                                  "--listen", "127.0.0.1:9002", "--db", "flag.db",
                                  "--rate-limit-per-minute", "0"]), env)
    assert (s.require_signatures, s.body_limit_kb, s.host_port, s.database_path, s.rate_limit_per_minute) == (
        False, 2, ("127.0.0.1", 9002), "flag.db", 0)
    for bad in (["serve", "--tls-cert", "c.pem"], ["serve", "--listen", "nowhere"]):
        with pytest.raises(settings.SettingsError):
            cli.serve_settings(parse(bad), env)
