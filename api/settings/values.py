"""One given value (a string from the environment, a TOML value, a flag's) made into its setting's
kind and checked by ``msgspec.convert`` against the field's type and range; a value that cannot be
used is one ``ConfigError`` line naming the setting, what it must be, and how to change it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from runwatch.api.settings.base import ConfigError
from runwatch.api.settings.catalog import KINDS, Entry

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in TRUE:
        return True
    if str(value).lower() in FALSE:
        return False
    raise ValueError(value)


def _as_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


def _as_path(value: Any) -> Path | None:
    return Path(value).expanduser() if value not in (None, "") else None


#: How a given value becomes a value of each kind (``str`` leaves ``None`` alone: an unset optional).
COERCE: dict[type, Any] = {
    int: int,
    float: float,
    bool: _as_bool,
    list: _as_list,
    Path: _as_path,
    str: lambda value: str(value) if value is not None else None,
}


def parse(entry: Entry, given: Any, where: str) -> Any:
    """``given`` as a value of ``entry``'s setting; ``where`` says how to change it (``set RUNWATCH_PORT …``)."""
    try:
        value = COERCE[entry.kind](given)
    except (TypeError, ValueError):
        raise ConfigError(f"{entry.key} must be {KINDS[entry.kind]}, got {given!r}; {where}") from None
    if entry.choices and isinstance(value, str):
        value = value.lower()  # the words of a choice, in any case
    if isinstance(value, float) and not math.isfinite(value):  # (msgspec's ge/le let inf through)
        raise ConfigError(entry.refusal(value, where))
    try:
        return msgspec.convert(value, entry.annotation)
    except msgspec.ValidationError:
        raise ConfigError(entry.refusal(value, where)) from None
