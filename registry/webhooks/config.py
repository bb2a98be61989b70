"""The ``notifications`` section (Distribution's keys, plus Berth's format, secret and filters).

Owned by the webhooks package; loaded by :mod:`registry.config`. Distribution's
endpoint keys keep their meaning; Berth adds ``format``, ``secret``,
``repositories``/``tags`` glob filters, ``maxretryage`` and ``maxbackoff`` per
endpoint, and ``outbox``, ``retention`` and ``draintimeout`` for the section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.configschema import Duration

ACTIONS = ("push", "pull", "mount", "delete")
FORMATS = ("distribution", "cloudevents")
DEFAULT_TIMEOUT = 1.0
DEFAULT_THRESHOLD = 10
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_MAX_RETRY_AGE = 24 * 3600.0
DEFAULT_RETENTION = 72 * 3600.0
DEFAULT_DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class IgnoreConfig:
    """``ignore``: events to leave out, by target media type or by action."""

    mediatypes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()

    def validate(self) -> None:
        """Actions must be ones Berth emits."""
        for action in self.actions:
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")


@dataclass(frozen=True)
class Endpoint:
    """One webhook receiver."""

    name: str = ""
    url: str = ""
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: Duration = Duration(DEFAULT_TIMEOUT)
    threshold: int = DEFAULT_THRESHOLD
    backoff: Duration = Duration(DEFAULT_BACKOFF)
    ignoredmediatypes: tuple[str, ...] = ()
    ignore: IgnoreConfig = field(default_factory=IgnoreConfig)
    disabled: bool = False
    # Berth additions:
    format: str = "distribution"
    secret: str = ""
    repositories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    maxretryage: Duration = Duration(DEFAULT_MAX_RETRY_AGE)
    maxbackoff: Duration = Duration(DEFAULT_MAX_BACKOFF)

    def validate(self) -> None:
        """Reject what cannot work; the loader turns the message into a ConfigError naming the key."""
        if not self.name:
            raise ValueError("name is required")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http(s), got {self.url!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be distribution or cloudevents, got {self.format!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if self.backoff <= 0 or self.maxbackoff < self.backoff:
            raise ValueError("backoff must be positive and not above maxbackoff")
        if self.maxretryage <= 0:
            raise ValueError("maxretryage must be positive")
        for pattern in (*self.repositories, *self.tags):
            if not pattern:
                raise ValueError("empty repository or tag pattern")

    @property
    def ignored_media_types(self) -> frozenset[str]:
        """``ignoredmediatypes`` and ``ignore.mediatypes`` together."""
        return frozenset((*self.ignoredmediatypes, *self.ignore.mediatypes))


@dataclass(frozen=True)
class EventsConfig:
    """``events``: what every endpoint may receive."""

    includereferences: bool = False
    pull: bool = False


@dataclass(frozen=True)
class NotificationsConfig:
    """``notifications``."""

    events: EventsConfig = field(default_factory=EventsConfig)
    endpoints: tuple[Endpoint, ...] = ()
    # Directory of this process's durable outbox (local disk; one per replica). Empty: see
    # registry.webhooks.outbox_directory for the default.
    outbox: str = ""
    # Delivered log segments are kept this long so `berth webhooks replay --since` can re-send them.
    retention: Duration = Duration(DEFAULT_RETENTION)
    # On shutdown, delivery keeps going this long to flush what it can.
    draintimeout: Duration = Duration(DEFAULT_DRAIN_TIMEOUT)

    def validate(self) -> None:
        """Endpoint names are unique (they name the outbox state)."""
        names = [e.name for e in self.endpoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate endpoint name {dupes[0]!r}")
        if self.retention < 0 or self.draintimeout < 0:
            raise ValueError("retention and draintimeout must not be negative")

    @property
    def active_endpoints(self) -> list[Endpoint]:
        """The endpoints that are not disabled."""
        return [e for e in self.endpoints if not e.disabled]
