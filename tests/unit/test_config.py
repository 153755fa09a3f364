from __future__ import annotations

import json
from pathlib import Path

import pytest

from nethook import config
from nethook.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_on_and_off_stay_strings() -> None:
    doc = config.load_yaml(
        "rules:\n  - name: r\n    on: {type: syslog}\n    when: x\n    do: []\n"
        "vars: {state: off, enabled: yes, really: true, nope: no}\n"
    )
    assert "on" in doc["rules"][0] and True not in doc["rules"][0]
    assert doc["vars"] == {"state": "off", "enabled": "yes", "really": True, "nope": "no"}
    cfg = config.from_dict(doc)
    assert cfg.rules is not None and cfg.rules[0].on.type == "syslog"
    assert cfg.vars["state"] == "off"


def test_interpolation_with_defaults_and_escapes() -> None:
    env = {"TOKEN": "s3cr3t-value-long-enough"}
    out = config.interpolate(
        {"a": "${TOKEN}", "b": "x-${MISSING:-fallback}-y", "c": ["$${TOKEN}"], "d": 5}, env
    )
    assert out == {"a": "s3cr3t-value-long-enough", "b": "x-fallback-y", "c": ["${TOKEN}"], "d": 5}


def test_missing_variable_names_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        config.interpolate({"sources": {"gh": {"auth": {"secret": "${GH_SECRET}"}}}}, {})
    assert exc.value.errors == ["sources.gh.auth.secret: environment variable GH_SECRET is not set"]


def test_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        config.from_dict(
            {
                "server": {"port": "eighty"},
                "security": {"max_payload_sise": 10},
                "sources": {"x": {"format": "raw"}},
            }
        )
    text = "\n".join(exc.value.errors)
    assert "server.port" in text
    assert "security.max_payload_sise: unknown key" in text
    assert "x.auth: every source needs auth" in text


def test_classic_webhook_config_is_valid_as_is() -> None:
    cfg = config.load(ROOT / "webhook_config.json", env={})
    raw = json.loads((ROOT / "webhook_config.json").read_text())
    assert set(raw) == {"server", "apis", "security", "logging"}
    assert cfg.security.max_payload_size == raw["security"]["max_payload_size"]
    assert cfg.security.rate_limit.requests_per_minute == 600
    assert cfg.apis["dad_jokes"].url == "https://icanhazdadjoke.com/"
    # No sources / rules in the classic file: the default source and classic rules apply.
    assert cfg.sources is not None and cfg.sources["default"].auth is not None
    assert [r.on.type for r in cfg.rules or []] == [
        "joke_request",
        "card_draw",
        "device_status_check",
    ]


def test_env_token_replaces_generated_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("store: {url: 'sqlite:///x.db'}\n")
    cfg = config.with_defaults(
        config.from_dict({"store": {"url": "sqlite:///x.db"}}),
        env={"NETHOOK_TOKEN": "from-env-0123456789"},
    )
    auth = cfg.sources["default"].auth  # type: ignore[index]
    assert auth is not None and auth.all_secrets() == ["from-env-0123456789"]


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("store: {url: 'sqlite:///db/n.db', data_dir: out}\nsources: {}\nrules: []\n")
    cfg = config.load(path)
    assert cfg.store.sqlite_path == tmp_path / "sub" / "db" / "n.db"
    assert cfg.store.data_dir == tmp_path / "sub" / "out"


def test_token_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nethook.token"
    first = config.ensure_token_file(path)
    assert len(first) >= 24
    assert path.stat().st_mode & 0o777 == 0o600
    assert config.ensure_token_file(path) == first


def test_unknown_extension_and_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("x=1")
    with pytest.raises(ConfigError, match="unknown config extension"):
        config.load(bad)
    broken = tmp_path / "c.yml"
    broken.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        config.load(broken)


def test_rule_step_must_name_one_action() -> None:
    with pytest.raises(ConfigError, match=r"rules\.0\.do.*exactly one action"):
        config.from_dict({"rules": [{"name": "r", "do": [{"log": {}, "http": {}}]}]})
