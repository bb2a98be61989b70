"""Parsing ``WWW-Authenticate`` headers (RFC 7235) into challenges (pure).

Owns the client's view of a challenge: a scheme (lower-cased) and its
parameters (names lower-cased, quoted strings unescaped). Several challenges in
one header value, and several header values, are all returned in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})\s*")
_TOKEN68_RE = re.compile(r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?=,|$)")


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: ``Bearer realm="…",service="…",scope="…"``."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        """The ``realm`` parameter (for Bearer: the token endpoint URL)."""
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        """The ``service`` parameter of a Bearer challenge."""
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The space-separated ``scope`` parameter, split."""
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str | None:
        """The ``error`` parameter (``insufficient_scope``, ``invalid_token``) if present."""
        return self.params.get("error")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more ``WWW-Authenticate`` values; malformed tails are dropped."""
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        pos = 0
        text = value.strip()
        while pos < len(text):
            while pos < len(text) and text[pos] in ", \t":
                pos += 1
            m = _SCHEME_RE.match(text, pos)
            if not m:
                break
            scheme = m.group(1).lower()
            pos = m.end()
            params: dict[str, str] = {}
            t68 = _TOKEN68_RE.match(text, pos)
            if t68 and not _PARAM_RE.match(text, pos):
                params[""] = t68.group(1)
                pos = t68.end()
            else:
                while True:
                    pm = _PARAM_RE.match(text, pos)
                    if not pm:
                        break
                    params[pm.group(1).lower()] = _unquote(pm.group(2))
                    pos = pm.end()
                    if pos < len(text) and text[pos] == ",":
                        # A comma either separates parameters or starts the next challenge.
                        nxt = _PARAM_RE.match(text, pos + 1)
                        if nxt:
                            pos += 1
                            continue
                        pos += 1
                    break
            out.append(Challenge(scheme, params))
    return out
