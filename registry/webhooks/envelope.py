"""Event payloads: Distribution's envelope and CloudEvents 1.0 structured JSON (pure).

:func:`event_record` turns a :class:`registry.events.Event` into the JSON
object Distribution 2.8 sends for the same operation: the same keys, in the
same order, with the same omissions (Go's ``omitempty``: empty strings, zero
sizes and empty lists are left out, except ``request.id``, ``request.method``
and ``request.useragent``, which are always present), and timestamps in Go's
RFC 3339 form (UTC, ``Z``, trailing zeros of the fraction trimmed). That
object is what the outbox stores; :func:`render` builds the bytes one
endpoint receives from it, so a retry sends the same body every time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from registry.events import Event
from registry.mediatypes import EVENTS

DISTRIBUTION_CONTENT_TYPE = EVENTS
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
CLOUDEVENTS_TYPE_PREFIX = "io.berth.registry."
# Keys of a reference descriptor, in Distribution's order (platform is not carried over).
_DESCRIPTOR_KEYS = ("mediaType", "size", "digest", "urls", "annotations")


@dataclass(frozen=True)
class Source:
    """The registry node that generated the event (Distribution's ``source``)."""

    addr: str
    instance_id: str


def go_timestamp(when: datetime) -> str:
    """``when`` as Go's ``time.RFC3339Nano`` in UTC: ``2024-01-02T03:04:05.12Z``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += "." + f"{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def _descriptor(ref: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ref[k] for k in _DESCRIPTOR_KEYS if ref.get(k)}


def event_record(event: Event, source: Source) -> dict[str, Any]:
    """The Distribution event object for ``event`` (references always included; see :func:`render`)."""
    target: dict[str, Any] = {}
    if event.media_type:
        target["mediaType"] = event.media_type
    if event.size:
        target["size"] = event.size
    if event.digest:
        target["digest"] = event.digest
    if event.size:
        target["length"] = event.size
    if event.repository:
        target["repository"] = event.repository
    if event.from_repository:
        target["fromRepository"] = event.from_repository
    if event.url:
        target["url"] = event.url
    if event.tag:
        target["tag"] = event.tag
    refs = [_descriptor(r) for r in event.references]
    if refs:
        target["references"] = refs
    request: dict[str, Any] = {"id": event.request.id}
    if event.request.addr:
        request["addr"] = event.request.addr
    if event.request.host:
        request["host"] = event.request.host
    request["method"] = event.request.method
    request["useragent"] = event.request.useragent
    src: dict[str, Any] = {}
    if source.addr:
        src["addr"] = source.addr
    if source.instance_id:
        src["instanceID"] = source.instance_id
    return {
        "id": event.id,
        "timestamp": go_timestamp(event.timestamp),
        "action": event.action,
        "target": target,
        "request": request,
        "actor": {"name": event.actor} if event.actor else {},
        "source": src,
    }


def _without_references(record: Mapping[str, Any]) -> dict[str, Any]:
    if "references" not in record.get("target", {}):
        return dict(record)
    target = {k: v for k, v in record["target"].items() if k != "references"}
    return {**record, "target": target}


def distribution_body(record: Mapping[str, Any], include_references: bool) -> bytes:
    """``{"events": [record]}``, as Distribution sends one event per request."""
    if not include_references:
        record = _without_references(record)
    return json.dumps({"events": [record]}, separators=(",", ":")).encode()


def cloudevents_body(record: Mapping[str, Any], include_references: bool) -> bytes:
    """A CloudEvents 1.0 structured-mode JSON event whose ``data`` is the Distribution event."""
    if not include_references:
        record = _without_references(record)
    target = record.get("target", {})
    host = record.get("request", {}).get("host") or record.get("source", {}).get("addr", "")
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": record["id"],
        "source": f"berth://{host}/{target.get('repository', '')}",
        "type": CLOUDEVENTS_TYPE_PREFIX + record["action"],
        "time": record["timestamp"],
        "datacontenttype": "application/json",
    }
    subject = target.get("tag") or target.get("digest")
    if subject:
        ce["subject"] = subject
    ce["data"] = record
    return json.dumps(ce, separators=(",", ":")).encode()


def render(record: Mapping[str, Any], fmt: str, include_references: bool) -> tuple[str, bytes]:
    """(Content-Type, body) of ``record`` in endpoint format ``fmt``."""
    if fmt == "cloudevents":
        return CLOUDEVENTS_CONTENT_TYPE, cloudevents_body(record, include_references)
    return DISTRIBUTION_CONTENT_TYPE, distribution_body(record, include_references)
