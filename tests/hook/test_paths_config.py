import os

import pytest

from ccflux import config, paths


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for var in ("CCFLUX_HOME", "CLAUDE_PLUGIN_DATA", "CLAUDE_CONFIG_DIR", config.ENV_ENDPOINT, config.ENV_TOKEN):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_state_dir_order(clean_env, monkeypatch):
    home = clean_env / "home"
    assert paths.state_dir() == str(home / ".claude" / "ccflux")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(clean_env / "cfg"))
    assert paths.state_dir() == str(clean_env / "cfg" / "ccflux")
    monkeypatch.setenv("CLAUDE_PLUGIN_DATA", str(clean_env / "plugin-data"))
    assert paths.state_dir() == str(clean_env / "plugin-data")
    monkeypatch.setenv("CCFLUX_HOME", str(clean_env / "explicit"))
    assert paths.state_dir() == str(clean_env / "explicit")


def test_commands_find_the_state_the_hook_used(clean_env, monkeypatch):
    data = clean_env / "home" / ".claude" / "plugins" / "data"
    old, new = data / "ccflux-inline", data / "ccflux-acme"
    for d in (old, new, data / "other-plugin"):
        d.mkdir(parents=True)
    (old / "state.db").write_bytes(b"")
    os.utime(old / "state.db", (1, 1))
    (new / "state.db").write_bytes(b"")
    assert paths.command_state_dir() == str(new)
    monkeypatch.setenv("CCFLUX_HOME", str(clean_env / "x"))
    assert paths.command_state_dir() == str(clean_env / "x")


def test_commands_default_when_the_plugin_never_ran(clean_env):
    assert paths.command_state_dir() == str(clean_env / "home" / ".claude" / "ccflux")


def test_hook_reads_a_config_written_from_a_shell(clean_env, monkeypatch):
    config.save({"api_endpoint": "https://rx.example/report", "api_token": "ccf_rt_secret"})
    written = clean_env / "home" / ".claude" / "ccflux" / "config.json"
    assert (written.stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("CLAUDE_PLUGIN_DATA", str(clean_env / "plugin-data"))  # as under Claude Code
    assert config.might_be_configured()
    cfg = config.load()
    assert cfg.endpoint == "https://rx.example/report" and cfg.refresh_token == "ccf_rt_secret"
    assert "ccf_rt_secret" not in repr(cfg)


def test_user_config_env_overrides_the_file(clean_env, monkeypatch):
    config.save({"api_endpoint": "https://file.example", "api_token": "file-token", "device_name": "laptop"})
    monkeypatch.setenv(config.ENV_ENDPOINT, "https://env.example")
    monkeypatch.setenv(config.ENV_TOKEN, "env-token")
    cfg = config.load()
    assert (cfg.endpoint, cfg.refresh_token, cfg.device_name, cfg.source) == (
        "https://env.example", "env-token", "laptop", "userConfig")


def test_unconfigured_and_broken_configs(clean_env):
    assert not config.might_be_configured() and config.load() is None
    path = clean_env / "home" / ".claude" / "ccflux"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{not json")
    with pytest.raises(config.ConfigError):
        config.load()
    (path / "config.json").write_text('{"api_endpoint": "https://x", "api_token": 5}')
    with pytest.raises(config.ConfigError, match="api_token"):
        config.load()


def test_exposed_config_is_detected(clean_env):
    config.save({"api_endpoint": "https://x"})
    assert not config.file_is_exposed()
    os.chmod(config.config_path(), 0o644)
    assert config.file_is_exposed()


def test_ignore_dirs(tmp_path):
    cfg = config.Config("https://x", "t", "d", (str(tmp_path / "private"),))
    assert cfg.ignores(str(tmp_path / "private"))
    assert cfg.ignores(str(tmp_path / "private" / "sub"))
    assert not cfg.ignores(str(tmp_path / "privateer"))
    assert not cfg.ignores("")
