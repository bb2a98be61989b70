"""A small, strict loader from YAML mappings into frozen dataclasses.

Each config section is a frozen dataclass whose field names are the YAML keys
(Distribution's spelling: lower case, no separators). :func:`load_section`
checks every key and value against the field types and raises
:class:`ConfigError` naming the dotted key on the first problem. Supported
field types: ``str``, ``int``, ``float``, ``bool``, :class:`Duration`
(``"30s"``, ``"168h"``, or seconds), :class:`ByteSize` (``"5MiB"`` or bytes),
``list[...]``, ``dict[str, ...]``, nested dataclasses and ``X | None``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""


class Duration(float):
    """Seconds, parsed from Go-style durations (``1h30m``, ``500ms``, ``168h``; Berth adds days, ``90d``)."""

    _UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    _RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        if isinstance(value, bool):
            raise ValueError("expected a duration")
        if isinstance(value, (int, float)):
            # Distribution treats bare integers as nanoseconds; Berth takes seconds, which is what
            # people mean in YAML. Document it.
            return cls(float(value))
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise ValueError("empty duration")
            pos, total = 0, 0.0
            for m in cls._RE.finditer(text):
                if m.start() != pos:
                    raise ValueError(f"invalid duration {value!r}")
                total += float(m.group(1)) * cls._UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text):
                try:
                    return cls(float(text))
                except ValueError:
                    raise ValueError(f"invalid duration {value!r}") from None
            return cls(total)
        raise ValueError(f"invalid duration {value!r}")


class ByteSize(int):
    """Bytes, parsed from ``10485760``, ``5MiB``, ``5MB``, ``1g``."""

    _UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 10**6,
              "mib": 1 << 20, "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}

    @classmethod
    def parse(cls, value: Any) -> "ByteSize":
        if isinstance(value, bool):
            raise ValueError("expected a size")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("size must not be negative")
            return cls(value)
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
            if m and m.group(2).lower() in cls._UNITS:
                return cls(int(m.group(1)) * cls._UNITS[m.group(2).lower()])
        raise ValueError(f"invalid size {value!r}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        last: Exception | None = None
        for arg in args:
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                last = exc
        raise last or ConfigError(f"{key}: invalid value {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        return load_section(tp, value, key)  # type: ignore[arg-type]
    if origin is list or tp is list:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item,) = get_args(tp) or (Any,)
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        item = get_args(tp)[0] if get_args(tp) else Any
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    try:
        if tp is Duration:
            return Duration.parse(value)
        if tp is ByteSize:
            return ByteSize.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")


def load_section(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``; unknown keys and bad values raise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for raw_name, value in data.items():
        name = str(raw_name)
        attr = name.replace("-", "_")
        if attr not in fields:
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"{where}: unknown configuration key")
        kwargs[attr] = _convert(hints[attr], value, f"{key}.{name}" if key else name)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key or 'config'}: {exc}") from None
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{key or 'config'}: {exc}") from None
    return obj


def section_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a dataclass section (for env overrides and docs)."""
    return dict(get_type_hints(cls))


def unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


__all__ = ["ByteSize", "ConfigError", "Duration", "load_section", "section_fields", "unwrap_optional", "typing"]
