"""Settings are checked at start: every number within its range, every word one of its choices; a
wrong one is one line naming the setting and how to change it, and serve exits 2. What a setting is
called, where it comes from and what it allows is said once, in the ``Settings`` structs: the flags,
the ``serve --help`` list and the documentation's tables follow them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import msgspec
import pytest

from runwatch.api.cli.commands import build_parser
from runwatch.api.settings.base import number
from runwatch.api.settings.config import CATALOG, ConfigError, Settings, load_settings
from runwatch.api.settings.flags import ENVIRONMENT_HELP, given_flags
from tests.conftest import ROOT
from tests.harness.cli import one_line_error, runwatch

NUMERIC = sorted(entry.key for entry in CATALOG if entry.kind in (int, float))
WORDS = sorted(entry.key for entry in CATALOG if entry.choices)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"RUNWATCH_COALESCE_MS": "-5"}, "coalesce_ms must be between 0 and 10000, got -5; set RUNWATCH_COALESCE_MS"),
        ({"RUNWATCH_MAX_QUEUED": "-1"}, "max_queued must be 0 or more, got -1; set RUNWATCH_MAX_QUEUED"),
        ({"RUNWATCH_LOG_LEVEL": "loud"}, "log_level must be debug, info, warning or error, got 'loud'"),
    ],
    ids=["coalesce-negative", "queue-negative", "log-level-unknown"],
)
def test_a_setting_out_of_range_stops_serve_with_one_line(env, says, tmp_path):
    result = runwatch("serve", "--data-dir", str(tmp_path), env={"PATH": "", **env})
    assert says in one_line_error(result)


def test_a_flag_out_of_range_names_the_flag(tmp_path):
    said = one_line_error(runwatch("serve", "--data-dir", str(tmp_path), "--coalesce-ms", "-5"))
    assert said.endswith("coalesce_ms must be between 0 and 10000, got -5; pass --coalesce-ms with another value")


def test_every_numeric_setting_has_a_range_its_default_is_in():
    assert [key for key in NUMERIC if CATALOG[key].allowed is None] == [], "give each number a range: setting(ge=…)"
    for key in NUMERIC:
        entry = CATALOG[key]
        assert math.isfinite(entry.default)
        msgspec.convert(entry.default, entry.annotation)  # raises if the default is outside its range


@pytest.mark.parametrize("name", NUMERIC)
def test_every_numeric_setting_refuses_a_value_below_its_range_and_nan(name):
    entry = CATALOG[name]
    meta = entry.meta
    below = meta.gt if meta.gt is not None else meta.ge - 1
    for value in (str(below), "nan", "inf"):
        with pytest.raises(ConfigError, match=rf"^{name} must be .*; set {entry.env} to another value$"):
            load_settings(environ={entry.env: value})
    if meta.le is not None:
        with pytest.raises(ConfigError, match=rf"^{name} must be between"):
            load_settings(environ={entry.env: str(meta.le + 1)})


@pytest.mark.parametrize("name", WORDS)
def test_every_word_setting_refuses_another_word_and_takes_its_own_in_capitals(name):
    entry = CATALOG[name]
    with pytest.raises(ConfigError, match=rf"^{name} must be .*, got 'loud'; set {entry.env} to another value$"):
        load_settings(environ={entry.env: "loud"})
    first = entry.choices[0]
    assert getattr(getattr(load_settings(environ={entry.env: first.upper()}), entry.section), entry.name) == first


def test_a_value_from_the_config_file_is_named_with_the_file(tmp_path):
    config = tmp_path / "runwatch.toml"
    config.write_text("heartbeat = 0\n")
    with pytest.raises(ConfigError, match=f"heartbeat must be 0.1 or more, got 0; change heartbeat in {config}"):
        load_settings(config_file=config, environ={})


def test_a_setting_s_name_is_its_environment_variable_s_without_runwatch():
    for entry in CATALOG:
        assert entry.env in (f"RUNWATCH_{entry.key.upper()}", entry.key.upper()), entry.key
        assert entry.help and entry.section in Settings.__struct_fields__
        secret = entry.meta.extra.get("secret") == "value"
        assert not (entry.flag and secret), f"{entry.key} is a secret: no flag (it would be in the shell history)"


def _toml(value: object) -> str:
    """A value as TOML writes it: JSON's numbers, strings and lists are TOML's too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(str(value) if isinstance(value, Path) else value)


def test_the_config_file_takes_every_setting_by_its_flat_name(tmp_path):
    config = tmp_path / "runwatch.toml"
    lines = [f"{entry.key} = {_toml(entry.default)}" for entry in CATALOG if entry.default is not None]
    config.write_text("\n".join(lines) + "\n")
    assert load_settings(config_file=config, environ={}) == Settings()


def test_no_repr_shows_a_secret():
    env = {
        "OPENAI_API_KEY": "sk-secret-key-1",
        "OPENAI_BASE_URL": "http://u:endpoint-pw@127.0.0.1:1/v1",
        "RUNWATCH_DATABASE_URL": "postgresql://u:database-pw@127.0.0.1/db",
        "RUNWATCH_REDIS_URL": "redis://:redis-pw@127.0.0.1:6379/0",
        "RUNWATCH_JWT_SECRET": "j" * 40,
        "RUNWATCH_JWT_ISSUER": "https://issuer",
        "RUNWATCH_JWT_AUDIENCE": "runwatch",
        "RUNWATCH_SESSION_SECRET": "session-secret",
        "RUNWATCH_METRICS_TOKEN": "metrics-token",
        "RUNWATCH_OIDC_ISSUER": "https://issuer",
        "RUNWATCH_OIDC_CLIENT_ID": "runwatch",
        "RUNWATCH_OIDC_CLIENT_SECRET": "oidc-secret",
    }
    settings = load_settings(environ=env)
    secrets = ["sk-secret-key-1", "endpoint-pw", "database-pw", "redis-pw", "j" * 40, "session-secret"]
    secrets += ["metrics-token", "oidc-secret"]
    assert sorted(settings.secrets) == sorted(secrets)
    shown = repr(settings)
    assert [s for s in secrets if s in shown] == []
    assert "postgresql://***@127.0.0.1/db" in shown and "issuer='https://issuer'" in shown


def test_serve_s_flags_and_help_come_from_the_settings():
    flagged = {entry.flag: entry for entry in CATALOG if entry.flag}
    values = {flag: entry.choices[-1] if entry.choices else "1" for flag, entry in flagged.items()}
    args = build_parser().parse_args(["serve", *[arg for flag, value in values.items() for arg in (flag, value)]])
    numbers = (int, float)
    expected = {e.key: e.kind(values[f]) if e.kind in numbers else values[f] for f, e in flagged.items()}
    assert given_flags(args) == expected
    assert all(f"  {entry.env:<32} {entry.help}" in ENVIRONMENT_HELP for entry in CATALOG)
    keys = build_parser().parse_args(["keys", "list", "--database", "/tmp/x.db", "--data-dir", "/tmp"])
    assert given_flags(keys) == {"data_dir": "/tmp", "database_url": "/tmp/x.db"}


#: A documentation table of settings: ``| setting | environment | default | meaning |``.
TABLE_HEAD = "| setting | environment | default | meaning |"


def _documented() -> dict[str, tuple[str, str, str, str]]:
    """Every setting in the tables of docs/configuration.md and docs/security.md: its variable, default, meaning."""
    found: dict[str, tuple[str, str, str, str]] = {}
    for page in ("configuration.md", "security.md"):
        text = (ROOT / "docs" / page).read_text()
        for table in text.split(TABLE_HEAD)[1:]:
            for row in re.findall(r"^\|(.*)\|$", table.split("\n\n")[0], re.MULTILINE)[1:]:
                setting, env, default, meaning = (cell.strip() for cell in row.split(" | "))
                names, variables = re.findall(r"`([^`]+)`", setting), re.findall(r"`([^`]+)`", env)
                assert len(names) == len(variables), f"docs/{page}: {row}"
                for name, variable in zip(names, variables, strict=True):
                    assert name not in found, f"{name} is in two tables"
                    found[name] = (page, variable, default, meaning)
    return found


def test_the_documentation_tables_name_every_setting_with_its_variable_default_and_flag():
    documented = _documented()
    assert sorted(set(documented) - {e.key for e in CATALOG}) == [], "the docs name settings that do not exist"
    assert [e.key for e in CATALOG if e.key not in documented] == [], "add these to docs/configuration.md"
    for entry in CATALOG:
        page, variable, default, meaning = documented[entry.key]
        assert variable == entry.env, f"docs/{page}: {entry.key} is set by {entry.env}"
        plain = entry.field.default
        if plain not in (None, "", msgspec.NODEFAULT):
            shown = str(plain).lower() if isinstance(plain, bool) else number(plain)
            codes = [code.removeprefix("./") for code in re.findall(r"`([^`]+)`", default)]
            assert shown in codes, f"docs/{page}: {entry.key}'s default is {shown}, not {default}"
        for flag in re.findall(r"Flag: `(--[a-z-]+)`", meaning):
            assert flag == entry.flag, f"docs/{page}: {entry.key}'s flag is {entry.flag}"
