"""Which events an endpoint receives (pure).

An event reaches an endpoint unless one of these leaves it out:

* its action is in ``ignore.actions``;
* its target media type is in ``ignoredmediatypes`` or ``ignore.mediatypes``;
* ``repositories`` is set and no pattern matches the target repository;
* ``tags`` is set and the event has no tag or no pattern matches it.

Patterns are globs: ``*`` and ``?`` stay within one path component, ``**``
crosses ``/``, ``[abc]`` is a character class.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from registry.webhooks.config import Endpoint


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob (``*``, ``**``, ``?``, ``[...]``) into an anchored regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class EndpointFilter:
    """The filter of one endpoint, compiled once."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._actions = frozenset(endpoint.ignore.actions)
        self._media_types = endpoint.ignored_media_types
        self._repos = _compile(endpoint.repositories)
        self._tags = _compile(endpoint.tags)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether the stored event ``record`` (Distribution's event object) goes to this endpoint."""
        if record.get("action") in self._actions:
            return False
        target = record.get("target", {})
        if target.get("mediaType", "") in self._media_types:
            return False
        if self._repos is not None and not _any(self._repos, target.get("repository", "")):
            return False
        if self._tags is not None:
            tag = target.get("tag", "")
            if not tag or not _any(self._tags, tag):
                return False
        return True


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]] | None:
    compiled = [glob_regex(p) for p in patterns]
    return compiled or None


def _any(patterns: list[re.Pattern[str]], value: str) -> bool:
    return any(p.match(value) for p in patterns)
