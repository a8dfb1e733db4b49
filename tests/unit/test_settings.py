"""Settings are checked at start: every number within its range, every word one of its choices; a
wrong one is one line naming the setting and how to change it, and serve exits 2."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from runwatch.api.settings.config import CHOICES, ENV, ConfigError, Settings, load_settings
from runwatch.api.settings.ranges import RANGES
from tests.server.ops.test_cli import one_line_error, runwatch


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
    numeric = {f.name for f in fields(Settings) if f.type in ("int", "float")}
    assert numeric == set(RANGES), "give each numeric setting a range in api/settings/ranges.py"
    defaults = Settings()
    assert [name for name, allowed in RANGES.items() if not allowed.allows(getattr(defaults, name))] == []


@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_numeric_setting_refuses_a_value_below_its_range_and_nan(name):
    var, _ = ENV[name]
    allowed = RANGES[name]
    below = allowed.low if allowed.above else allowed.low - 1
    for value in (str(below), "nan", "inf"):
        with pytest.raises(ConfigError, match=rf"^{name} must be .*; set {var} to another value$"):
            load_settings(environ={var: value})
    if not math.isinf(allowed.high):
        with pytest.raises(ConfigError, match=rf"^{name} must be between"):
            load_settings(environ={var: str(allowed.high + 1)})


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_every_word_setting_refuses_another_word_and_takes_its_own_in_capitals(name):
    var, _ = ENV[name]
    with pytest.raises(ConfigError, match=rf"^{name} must be .*, got 'loud'; set {var} to another value$"):
        load_settings(environ={var: "loud"})
    first = CHOICES[name][0]
    assert getattr(load_settings(environ={var: first.upper()}), name) == first


def test_a_value_from_the_config_file_is_named_with_the_file(tmp_path):
    config = tmp_path / "runwatch.toml"
    config.write_text("heartbeat = 0\n")
    with pytest.raises(ConfigError, match=f"heartbeat must be 0.1 or more, got 0; change heartbeat in {config}"):
        load_settings(config_file=config, environ={})
