"""The vocabulary of settings: ``setting(...)`` states one field's environment variable, help, flag,
range and secrecy as ``msgspec.Meta``; ``Section`` is a frozen struct of such fields whose repr never
shows a secret. Everything else (the env list, flags, checks, docs test) is read from these."""

from __future__ import annotations

import functools
import typing
from typing import Any, Literal

import msgspec

from runwatch.agents.redact import MASK, mask_url, url_password

#: How a secret field is kept out of sight: ``value``, all of it; ``url``, the password in it.
Secrecy = Literal["value", "url"]


class ConfigError(ValueError):
    """A setting that cannot be used: one line naming it and how to change it."""


def setting(
    env: str,
    help: str,
    *,
    flag: str | None = None,
    secret: Secrecy | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> msgspec.Meta:
    """A field's metadata: its environment variable (its name in the config file and in messages is
    that variable's, lower case, without ``RUNWATCH_``), one line of help, the ``serve`` flag if it
    has one, whether it is secret, and the range a number must lie in (``msgspec.convert`` checks it)."""
    extra: dict[str, Any] = {"env": env}
    if flag is not None:
        extra["flag"] = flag
    if secret is not None:
        extra["secret"] = secret
    return msgspec.Meta(ge=ge, gt=gt, le=le, description=help, extra=extra)


def meta_of(annotation: Any) -> msgspec.Meta | None:
    """The ``msgspec.Meta`` of an ``Annotated[...]`` field type, if it has one."""
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, msgspec.Meta)), None)
    return None


@functools.cache
def secret_fields(section: type[msgspec.Struct]) -> dict[str, Secrecy]:
    """The fields of ``section`` marked secret, and how."""
    hints = typing.get_type_hints(section, include_extras=True)
    found: dict[str, Secrecy] = {}
    for name in section.__struct_fields__:
        meta = meta_of(hints[name])
        if meta is not None and meta.extra and "secret" in meta.extra:
            found[name] = meta.extra["secret"]
    return found


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """One group of settings. Its repr masks secrets: a secret value is ``***``, a URL loses its password."""

    def __repr__(self) -> str:
        secret = secret_fields(type(self))
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value and secret.get(name) == "value":
                value = MASK
            elif value and secret.get(name) == "url":
                value = mask_url(value)
            parts.append(f"{name}={value if value is MASK else repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def secret_values(self) -> list[str]:
        """What of this section must never be shown: secret values, and the passwords in secret URLs."""
        found: list[str] = []
        for name, how in secret_fields(type(self)).items():
            value = getattr(self, name)
            if value:
                found.extend([value] if how == "value" else url_password(value))
        return found


def number(value: object) -> str:
    """``5``, ``0.5``, ``-1``, ``nan``: a value as a person would write it (anything else as ``str`` does)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
