"""commands.py: status, flush, configure, preview, selftest — and no secrets in any output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest
from support.sendkit import (REFRESH, FakeReceiver, configure_env, enqueue, isolate, meta, outbox_bodies,
                             secret_forms, set_meta)

from ccflux import __version__, auth, cli, commands, config, sender, signing, transport


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, state_dir):
    isolate(monkeypatch)


@pytest.fixture
def fake(monkeypatch) -> FakeReceiver:
    """Every client the commands open talks to this in-process receiver."""
    configure_env(monkeypatch)
    receiver = FakeReceiver()
    real_open = transport.open_client
    monkeypatch.setattr(transport, "open_client", lambda http_transport=None: real_open(receiver.transport()))
    return receiver


def ccflux(*args: str, stdin: str = "", env: dict = None) -> subprocess.CompletedProcess:
    """The real console entry (`python -m ccflux`), as a person runs it."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **(env or {}))
    return subprocess.run([sys.executable, "-m", "ccflux", *args], input=stdin, capture_output=True,
                          text=True, env=full_env, timeout=60)


def status(capsys, as_json: bool = False):
    assert commands.main(["status", "--json"] if as_json else ["status"]) == 0
    out = capsys.readouterr().out
    return json.loads(out) if as_json else out


# -- status ---------------------------------------------------------------------------

def test_status_unconfigured_creates_nothing(capsys, state_dir):
    text = status(capsys)
    assert "configured    no: run `ccflux configure" in text and "spool         0 report(s)" in text
    data = status(capsys, as_json=True)
    assert data["configured"] is False and data["spool"]["depth"] == 0
    assert not state_dir.exists()


def test_status_shows_everything_and_no_secret(capsys, fake, state_dir):
    enqueue("s1"), enqueue("s2"), enqueue("s3")
    fake.script("/report", fake.answer(200), fake.answer(400), fake.answer(503))
    sender.drain(budget_s=10)
    text, data = status(capsys), status(capsys, as_json=True)
    assert data["configured"] and data["config_source"] == "userConfig"
    assert data["endpoint"] == "https://rx.test" and data["state_dir"] == str(state_dir)
    assert data["key"]["registered"] and not data["key"]["revoked"]
    assert data["key"]["public_key"] == signing.stored_public_key_b64()
    assert data["access_token"]["valid"] and data["access_token"]["expires_at"] > time.time() + 7 * 3600
    assert data["spool"]["depth"] == 1 and data["spool"]["oldest_age_secs"] >= 0
    assert [(d["session_id"], d["status"]) for d in data["dead_letters"]] == [("s2", 400)]
    assert data["last_success_at"] and "503" in data["last_error"]
    assert data["next_automatic_send_at"] > time.time()
    for label in ("registered", "valid until", "1 report(s)", "dead letters  1", "s2 turn 0: 400",
                  "last success", "last error", "not before"):
        assert label in text
    token = auth.read_cache()["access_token"]
    seed = (state_dir / signing.KEY_FILE).read_bytes()
    for form in secret_forms(REFRESH, token, seed):
        assert form not in text and form not in json.dumps(data)


def test_status_reports_revoked_key_and_refused_token(capsys, fake):
    enqueue()
    fake.revoked.add(bytes(signing.load_or_create_key().verify_key))
    sender.drain(budget_s=10)
    assert "REVOKED" in status(capsys) and status(capsys, as_json=True)["key"]["revoked"]
    fake.refresh = "ccf_rt_something-else"
    auth.forget()
    sender.drain(budget_s=10, force=True)
    data = status(capsys, as_json=True)
    assert data["access_token"]["refresh_token_rejected"] and data["last_error"] == auth.REJECTED_MESSAGE
    assert "ask IT for a new one" in status(capsys)


def test_status_warns_about_a_readable_config(capsys, monkeypatch, state_dir):
    config.save({"api_endpoint": "https://rx.test", "api_token": REFRESH})
    assert status(capsys, as_json=True)["config_file_exposed"] is False
    os.chmod(state_dir / "config.json", 0o644)
    assert status(capsys, as_json=True)["config_file_exposed"] is True
    text = status(capsys)
    assert "WARNING" in text and "readable by other users" in text and REFRESH not in text


def test_status_hides_credentials_in_the_endpoint_url(capsys, monkeypatch):
    configure_env(monkeypatch, endpoint="https://user:hunter2secret@rx.test/report")
    text = status(capsys)
    assert "hunter2secret" not in text and "[redacted]@rx.test" in text


def test_status_with_a_broken_config(capsys, state_dir):
    state_dir.mkdir(mode=0o700)
    (state_dir / "config.json").write_text("{not json")
    assert "configured    no: config.json is not valid JSON" in status(capsys)


# -- flush ----------------------------------------------------------------------------------

def test_flush_sends_everything_with_progress(capsys, fake):
    enqueue("a"), enqueue("b")
    assert commands.main(["flush"]) == 0
    err = capsys.readouterr().err
    assert "sent a turn 0" in err and "sent b turn 0" in err and "spool empty (2 sent" in err
    assert outbox_bodies() == []


def test_flush_waits_out_a_short_retry_after(capsys, fake):
    enqueue(), enqueue()
    fake.script("/report", fake.answer(200), fake.answer(429, {"Retry-After": "1"}))
    assert commands.main(["flush"]) == 0
    assert "rate limited: trying again in 1 s" in capsys.readouterr().err and outbox_bodies() == []


def test_flush_gives_up_on_a_long_retry_after(capsys, fake):
    enqueue()
    fake.script("/report", fake.answer(429, {"Retry-After": "600"}))
    assert commands.main(["flush", "--max-wait", "2"]) == 1
    err = capsys.readouterr().err
    assert "stopped: rate limited" in err and "1 report(s) kept" in err


def test_flush_rides_out_a_blip(capsys, fake, monkeypatch):
    monkeypatch.setattr(commands, "FLUSH_RETRY_PAUSES_S", (0.1, 0.1))
    enqueue()
    fake.script("/token", httpx.ReadTimeout("slow"))
    fake.script("/report", fake.answer(503))
    assert commands.main(["flush"]) == 0
    err = capsys.readouterr().err
    assert err.count("receiver unreachable or failing: trying again") == 2 and outbox_bodies() == []


def test_flush_fails_while_the_receiver_is_down(capsys, fake, monkeypatch):
    monkeypatch.setattr(commands, "FLUSH_RETRY_PAUSES_S", (0.1, 0.1))
    enqueue()
    fake.script("/token", *[httpx.ConnectError("refused")] * 3)
    assert commands.main(["flush"]) == 1
    assert "stopped: " in capsys.readouterr().err and len(outbox_bodies()) == 1
    assert fake.paths() == ["/token"] * 3


def test_flush_does_not_retry_what_a_person_must_fix(capsys, fake):
    enqueue()
    fake.refresh = "ccf_rt_other"
    assert commands.main(["flush"]) == 1
    assert fake.paths() == ["/token"] and "ask IT" in capsys.readouterr().err


def test_flush_retries_after_a_revoked_key(capsys, fake):
    enqueue()
    set_meta("key_revoked", "1")
    assert commands.main(["flush"]) == 0 and meta("key_revoked") is None


def test_flush_unconfigured(capsys, monkeypatch):
    assert commands.main(["flush"]) == 0  # nothing waiting: nothing to do
    enqueue()
    assert commands.main(["flush"]) == 1
    assert "not configured: 1 report(s) wait" in capsys.readouterr().err


# -- configure -------------------------------------------------------------------------------

def test_configure_reads_the_token_from_stdin(state_dir):
    done = ccflux("configure", "--endpoint", "https://rx.test/report", stdin=REFRESH + "\n")
    assert done.returncode == 0, done.stderr
    assert REFRESH not in done.stdout + done.stderr and "saved (not shown)" in done.stdout
    path = state_dir / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert json.loads(path.read_text()) == {"api_endpoint": "https://rx.test/report", "api_token": REFRESH}


def test_configure_reads_a_token_file_and_keeps_other_settings(state_dir, tmp_path, capsys):
    config.save({"device_name": "build-box"})
    token_file = tmp_path / "token.txt"
    token_file.write_text(REFRESH + "\n")
    assert commands.main(["configure", "--endpoint", "https://rx.test", "--token-file", str(token_file)]) == 0
    saved = json.loads((state_dir / "config.json").read_text())
    assert saved["api_token"] == REFRESH and saved["device_name"] == "build-box"
    assert REFRESH not in capsys.readouterr().out


def test_configure_refuses_http_unless_the_dev_flag(state_dir):
    done = ccflux("configure", "--endpoint", "http://rx.test", stdin=REFRESH)
    assert done.returncode == 2 and "refusing plain http" in done.stderr
    assert not (state_dir / "config.json").exists()
    done = ccflux("configure", "--endpoint", "http://rx.test", stdin=REFRESH, env={"CCFLUX_ALLOW_HTTP": "1"})
    assert done.returncode == 0


@pytest.mark.parametrize("stdin", ["", "   \n", "two words", "x" * 5000])
def test_configure_rejects_a_missing_or_odd_token(stdin, state_dir):
    done = ccflux("configure", "--endpoint", "https://rx.test", stdin=stdin)
    assert done.returncode == 2 and not (state_dir / "config.json").exists()
    assert (stdin.strip() not in done.stderr) or not stdin.strip()


@pytest.mark.parametrize("argv", [["--endpoint", "https://rx.test", REFRESH],
                                  ["--endpoint", "https://rx.test", "--token", REFRESH],
                                  ["--endpoint", "https://rx.test", f"--token={REFRESH}"]])
def test_a_token_on_the_command_line_is_refused_and_not_echoed(argv, state_dir):
    done = ccflux("configure", *argv)
    assert done.returncode == 2 and "never given on the command line" in done.stderr
    assert REFRESH not in done.stderr + done.stdout
    assert not (state_dir / "config.json").exists()


def test_configure_never_puts_the_token_in_argv(state_dir):
    """While configure runs, its command line holds no token (what `ps` shows)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "ccflux", "configure", "--endpoint", "https://rx.test"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        cmdline = b""
        deadline = time.time() + 10
        while b"configure" not in cmdline and time.time() < deadline:  # until the exec is done
            with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        out, err = proc.communicate(REFRESH.encode(), timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0 and b"configure" in cmdline and REFRESH.encode() not in cmdline


def test_reconfigure_clears_a_refused_token(capsys, fake, tmp_path):
    enqueue()
    fake.refresh = "ccf_rt_new-token-from-it"
    sender.drain(budget_s=10)
    assert meta("auth_failed") == "1"
    token_file = tmp_path / "t"
    token_file.write_text("ccf_rt_new-token-from-it")
    assert commands.main(["configure", "--endpoint", "https://rx.test", "--token-file", str(token_file)]) == 0
    assert meta("auth_failed") is None and meta("last_error") is None and auth.read_cache() == {}
    assert "take precedence over config.json" in capsys.readouterr().err  # the env settings still win


# -- preview, selftest, version ------------------------------------------------------------------

def test_preview_prints_exactly_the_stored_bodies(capsysbinary):
    enqueue("a"), enqueue("b", tokens=(1, 2, 3, 4))
    assert commands.main(["preview"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == b"".join(body + b"\n" for body in outbox_bodies()) and err == b""
    for line in out.splitlines():
        assert set(json.loads(line)) <= {"schema_version", "session_id", "user_email", "turn_index",
                                         "timestamp_utc", "session_start_utc", "models", "plugin_version"}


def test_preview_with_nothing_queued(capsysbinary, state_dir):
    assert commands.main(["preview"]) == 0
    assert capsysbinary.readouterr().out == b"" and not state_dir.exists()


def test_selftest_and_version():
    done = ccflux("selftest")
    assert done.returncode == 0 and done.stdout == "ok\n"
    done = ccflux("--version")
    assert done.returncode == 0 and done.stdout == f"ccflux {__version__}\n"


def test_cli_hands_people_commands_to_commands_main(monkeypatch):
    seen = []
    monkeypatch.setattr(commands, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["status", "--json"]) == 7 and seen == [["status", "--json"]]


def test_no_command_prints_help():
    done = ccflux()
    assert done.returncode == 2 and "status" in done.stderr
