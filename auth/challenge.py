"""HTTP authentication headers: building and parsing ``WWW-Authenticate`` and ``Authorization``.

Pure and shared with the client (which parses the server's challenges with
:func:`parse_www_authenticate`). The grammar is RFC 7235's: a header holds one
or more comma-separated challenges, each a scheme followed by ``name=value``
parameters (token or quoted-string) or a token68. Parsing never raises on a
malformed challenge header; it returns what it could read.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

MAX_TOKEN_LENGTH = 16 * 1024

_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BARE = re.compile(r"[^,\s]*")


@dataclass(frozen=True)
class Challenge:
    """One challenge: the scheme (lower case) and its parameters (names lower case)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""

    @property
    def realm(self) -> str:
        """The ``realm`` parameter ('' if absent)."""
        return self.params.get("realm", "")

    @property
    def scopes(self) -> list[str]:
        """The space-separated ``scope`` parameter as a list."""
        return self.params.get("scope", "").split()


def quote(value: str) -> str:
    """``value`` as an RFC 7230 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(scheme: str, params: Mapping[str, str]) -> str:
    """``Scheme name="value",...`` (Distribution's layout: no space after the commas)."""
    rendered = ",".join(f"{name}={quote(value)}" for name, value in params.items())
    return f"{scheme} {rendered}" if rendered else scheme


def basic_challenge(realm: str) -> str:
    """The Basic challenge for ``realm``."""
    return format_challenge("Basic", {"realm": realm})


def bearer_challenge(realm: str, service: str, scopes: Iterable[str] = (), error: str = "",
                     description: str = "") -> str:
    """The Bearer challenge naming every scope the request needs, and ``error`` if one applies.

    ``error`` is RFC 6750's ``invalid_request``, ``invalid_token`` or ``insufficient_scope``;
    ``description`` becomes its ``error_description`` (why, in words).
    """
    params = {"realm": realm, "service": service}
    scope = " ".join(scopes)
    if scope:
        params["scope"] = scope
    if error:
        params["error"] = error
    if error and description:
        params["error_description"] = description
    return format_challenge("Bearer", params)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_separators(self) -> None:
        while self.peek() in (" ", "\t", ","):
            self.pos += 1

    def token(self) -> str:
        m = _TCHAR.match(self.text, self.pos)
        if not m:
            return ""
        self.pos = m.end()
        return m.group(0)

    def token68(self) -> str:
        m = _TOKEN68.match(self.text, self.pos)
        if not m:
            return ""
        self.pos = m.end()
        return m.group(0)

    def bare(self) -> str:
        # An unquoted value; lenient (up to the next separator) for servers that skip quoting.
        m = _BARE.match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        return m.group(0)

    def quoted(self) -> str:
        # Called on the opening quote; an unterminated string runs to the end.
        self.pos += 1
        out: list[str] = []
        while not self.done():
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and not self.done():
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                break
            else:
                out.append(ch)
        return "".join(out)


def _looks_like_param(sc: _Scanner) -> bool:
    """Whether a ``name=`` (not a token68's padding) starts at the scanner's position."""
    m = _TCHAR.match(sc.text, sc.pos)
    if not m:
        return False
    rest = sc.text[m.end():].lstrip(" \t")
    return rest.startswith("=") and not rest.startswith("==")


def _parse_value(value: str) -> list[Challenge]:
    found: list[tuple[str, dict[str, str], str]] = []
    sc = _Scanner(value)
    while True:
        sc.skip_separators()
        if sc.done():
            break
        if found and _looks_like_param(sc):
            name = sc.token().lower()
            sc.skip_spaces()
            sc.pos += 1  # '='
            sc.skip_spaces()
            text = sc.quoted() if sc.peek() == '"' else sc.bare()
            found[-1][1].setdefault(name, text)
            continue
        word = sc.token()
        if not word:
            sc.pos += 1  # an illegal character: skip it
            continue
        sc.skip_spaces()
        token68 = ""
        if not sc.done() and sc.peek() != "," and not _looks_like_param(sc):
            token68 = sc.token68()
        found.append((word.lower(), {}, token68))
    return [Challenge(scheme, params, token68) for scheme, params, token68 in found]


def parse_www_authenticate(values: str | Sequence[str]) -> list[Challenge]:
    """Every challenge in one header value or in a list of header values, in order."""
    if isinstance(values, str):
        values = [values]
    return [c for value in values for c in _parse_value(value)]


def find_challenge(challenges: Iterable[Challenge], scheme: str) -> Challenge | None:
    """The first challenge of ``scheme`` (case-insensitive)."""
    scheme = scheme.lower()
    return next((c for c in challenges if c.scheme == scheme), None)


@dataclass(frozen=True)
class BasicCredentials:
    """A user name and password from a Basic ``Authorization`` header."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class BearerToken:
    """A token from a Bearer ``Authorization`` header."""

    token: str = field(repr=False)


class MalformedAuthorization(ValueError):
    """An ``Authorization`` header that cannot be read (or more than one of them)."""


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for Basic credentials."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_authorization(values: Sequence[str]) -> BasicCredentials | BearerToken | None:
    """The credentials in the request's ``Authorization`` header(s).

    None when there is no header or its scheme is neither Basic nor Bearer.
    Raises :class:`MalformedAuthorization` for more than one header, bad base64,
    a missing ``:``, non-UTF-8 credentials, or a token with illegal characters.
    """
    if not values:
        return None
    if len(values) > 1:
        raise MalformedAuthorization("more than one Authorization header")
    value = values[0].strip()
    scheme, _, rest = value.partition(" ")
    rest = rest.strip(" \t")
    kind = scheme.lower()
    if kind == "basic":
        if not rest or len(rest) > MAX_TOKEN_LENGTH:
            raise MalformedAuthorization("malformed Basic credentials")
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise MalformedAuthorization("malformed Basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise MalformedAuthorization("malformed Basic credentials")
        return BasicCredentials(username, password)
    if kind == "bearer":
        if not rest or len(rest) > MAX_TOKEN_LENGTH or not _TOKEN68.fullmatch(rest):
            raise MalformedAuthorization("malformed Bearer token")
        return BearerToken(rest)
    return None
