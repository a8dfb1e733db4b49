"""Every setting as one entry, read from the ``Settings`` structs and their ``setting(...)`` metadata:
its name (in the config file and in messages), environment variable, help, flag, kind, choices and
range. The env list, the flags, the messages and the docs test all read this; none restates it."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from runwatch.api.settings.base import meta_of, number

#: How a value of each kind is described when it cannot be one.
KINDS: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    list: "a comma-separated list",
    Path: "a path",
    str: "text",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One setting: ``section.name`` in ``Settings``, ``key`` in the config file and in messages."""

    key: str
    env: str
    help: str
    section: str
    name: str
    #: The field's type with its ``msgspec.Meta``: what ``msgspec.convert`` checks a value against.
    annotation: Any
    #: ``int``, ``float``, ``bool``, ``list``, ``Path`` or ``str``: how a string becomes a value.
    kind: type
    #: The words a ``Literal`` field takes (empty for any other).
    choices: tuple[str, ...]
    meta: msgspec.Meta
    field: msgspec.structs.FieldInfo
    flag: str | None

    @property
    def default(self) -> Any:
        """The value when nothing sets it (a fresh one for fields made by a factory)."""
        if self.field.default_factory is not msgspec.NODEFAULT:
            return self.field.default_factory()
        return self.field.default

    @property
    def allowed(self) -> str | None:
        """What a value must be, as the middle of ``port must be between 1 and 65535``; None if anything goes."""
        if self.choices:
            return f"{', '.join(self.choices[:-1])} or {self.choices[-1]}"
        meta = self.meta
        low = meta.ge if meta.ge is not None else meta.gt
        if low is None:
            return None if meta.le is None else f"{number(meta.le)} or less"
        if meta.le is not None:
            return f"between {number(low)} and {number(meta.le)}"
        return f"more than {number(low)}" if meta.gt is not None else f"{number(low)} or more"

    def refusal(self, value: Any, where: str) -> str:
        """The one line that refuses ``value`` for this setting and says how to change it."""
        shown = number(value) if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)
        return f"{self.key} must be {self.allowed or KINDS[self.kind]}, got {shown}; {where}"


def _kind(annotation: Any) -> tuple[type, tuple[str, ...]]:
    """The kind of value a field holds (an optional one's, without ``None``), and its words if a ``Literal``."""
    bare = annotation.__origin__ if typing.get_origin(annotation) is typing.Annotated else annotation
    args = [a for a in typing.get_args(bare) if a is not type(None)]
    if typing.get_origin(bare) is Literal:
        return str, tuple(args)
    if typing.get_origin(bare) is list:
        return list, ()
    if args:  # X | None
        return _kind(args[0])
    return bare, ()


def _key(env: str) -> str:
    return env.lower().removeprefix("runwatch_")


class Catalog:
    """The entries of a ``Settings`` type, in the order its sections and fields are declared."""

    def __init__(self, settings_type: type[msgspec.Struct]) -> None:
        self.settings_type = settings_type
        self._entries: dict[str, Entry] = {}
        for section in msgspec.structs.fields(settings_type):
            hints = typing.get_type_hints(section.type, include_extras=True)
            for field in msgspec.structs.fields(section.type):
                meta = meta_of(hints[field.name])
                if meta is None or not meta.extra or "env" not in meta.extra:
                    raise TypeError(f"{section.name}.{field.name} needs setting(...) metadata")
                kind, choices = _kind(hints[field.name])
                entry = Entry(
                    key=_key(meta.extra["env"]),
                    env=meta.extra["env"],
                    help=meta.description or "",
                    section=section.name,
                    name=field.name,
                    annotation=hints[field.name],
                    kind=kind,
                    choices=choices,
                    meta=meta,
                    field=field,
                    flag=meta.extra.get("flag"),
                )
                if entry.key in self._entries:
                    raise TypeError(f"two settings are named {entry.key}")
                self._entries[entry.key] = entry

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __getitem__(self, key: str) -> Entry:
        return self._entries[key]

    def build(self, values: dict[str, Any]) -> Any:
        """The ``Settings`` of these checked values by key (the rest are defaults), made by ``msgspec.convert``."""
        nested: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            entry = self._entries[key]
            nested.setdefault(entry.section, {})[entry.name] = value
        return msgspec.convert(nested, self.settings_type)
