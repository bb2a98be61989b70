"""The ``notifications`` section (Distribution's keys, plus Berth's format, secret and filters).

Owned by the webhooks package; loaded by :mod:`registry.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.configschema import Duration


@dataclass(frozen=True)
class IgnoreConfig:
    mediatypes: list[str] = field(default_factory=tuple)  # type: ignore[assignment]
    actions: list[str] = field(default_factory=tuple)  # type: ignore[assignment]


@dataclass(frozen=True)
class Endpoint:
    """One webhook receiver."""

    name: str = ""
    url: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    timeout: Duration = Duration(1.0)
    threshold: int = 10
    backoff: Duration = Duration(1.0)
    ignoredmediatypes: list[str] = field(default_factory=tuple)  # type: ignore[assignment]
    ignore: IgnoreConfig = field(default_factory=IgnoreConfig)
    disabled: bool = False
    # Berth additions:
    format: str = "distribution"
    secret: str = ""
    repositories: list[str] = field(default_factory=tuple)  # type: ignore[assignment]
    tags: list[str] = field(default_factory=tuple)  # type: ignore[assignment]
    maxretryage: Duration = Duration(86400.0)

    def validate(self) -> None:
        if not self.name:
            raise ValueError("name is required")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http(s), got {self.url!r}")
        if self.format not in ("distribution", "cloudevents"):
            raise ValueError(f"format must be distribution or cloudevents, got {self.format!r}")


@dataclass(frozen=True)
class EventsConfig:
    includereferences: bool = False
    pull: bool = False


@dataclass(frozen=True)
class NotificationsConfig:
    """``notifications``."""

    events: EventsConfig = field(default_factory=EventsConfig)
    endpoints: list[Endpoint] = field(default_factory=tuple)  # type: ignore[assignment]
    outbox: str = ""  # directory of the durable outbox; default <filesystem root>/_berth/outbox or ./outbox
