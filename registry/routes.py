"""The API's URL grammar as a pure function: path -> :class:`Route`.

Repository names contain ``/``, so aiohttp's router sends every ``/v2/...``
request to one dispatcher, which calls :func:`match`. The same function tells
the auth layer what a request touches (see ``auth.access``), so routing and
access control can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    BASE = "base"
    CATALOG = "catalog"
    TAGS = "tags"
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOAD_START = "upload_start"
    UPLOAD = "upload"
    REFERRERS = "referrers"


@dataclass(frozen=True)
class Route:
    """What a ``/v2/`` path addresses. ``name`` is raw: the handler validates it."""

    kind: Kind
    name: str = ""
    reference: str = ""  # tag or digest (manifest), digest (blob, referrers), upload id (upload)


_PATTERNS: list[tuple[re.Pattern[str], Kind]] = [
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), Kind.UPLOAD_START),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<ref>[^/]+)$"), Kind.UPLOAD),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<ref>[^/]+)$"), Kind.BLOB),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$"), Kind.MANIFEST),
    (re.compile(r"^(?P<name>.+)/tags/list$"), Kind.TAGS),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<ref>[^/]+)$"), Kind.REFERRERS),
]


def match(path: str) -> Route | None:
    """Parse a request path (already percent-decoded) below ``/v2``; None if it is no API route."""
    if not path.startswith("/v2"):
        return None
    rest = path[3:]
    if rest in ("", "/"):
        return Route(Kind.BASE)
    if not rest.startswith("/"):
        return None
    rest = rest[1:]
    if rest == "_catalog":
        return Route(Kind.CATALOG)
    for pattern, kind in _PATTERNS:
        m = pattern.match(rest)
        if m:
            return Route(kind, m.group("name"), m.groupdict().get("ref") or "")
    return None
