"""Registry events: what happened, emitted after it was committed.

Handlers build :class:`Event` objects and ``await sink.publish(events)``
before answering; the sink (``registry.webhooks``) must make them durable
before it returns and must never block on delivery. :class:`NullSink` is used
when no endpoint is configured.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class RequestInfo:
    id: str
    addr: str
    host: str
    method: str
    useragent: str


@dataclass(frozen=True)
class Event:
    """One event; field names follow Distribution's envelope."""

    action: str  # "push" | "pull" | "delete" | "mount"
    repository: str
    request: RequestInfo
    actor: str = ""
    media_type: str = ""
    size: int = 0
    digest: str = ""
    tag: str = ""
    url: str = ""
    references: tuple[dict[str, Any], ...] = ()
    from_repository: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class EventSink(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Record events durably (before the response is sent); delivery happens elsewhere."""


class NullSink:
    """Drops events (no endpoints configured)."""

    async def publish(self, events: Sequence[Event]) -> None:
        return None
