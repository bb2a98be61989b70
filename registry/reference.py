"""Names, tags and image references (pure; shared with the client).

Repository names follow the distribution spec's grammar::

    [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*

with at most 255 characters; tags are ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``.
A validated name never contains ``..``, ``//``, a leading ``/`` or a component
starting with ``_``, so it is safe to join into a storage path.

:func:`parse_reference` implements docker's reference grammar for the client:
``[host[:port]/]path[:tag][@digest]`` with ``docker.io/library`` defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.digest import Digest, InvalidDigest

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"


class InvalidReference(ValueError):
    """A name, tag or reference that does not follow the grammar."""


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(NAME_RE.match(name))


def is_valid_tag(tag: str) -> bool:
    return isinstance(tag, str) and bool(TAG_RE.match(tag))


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidReference(f"invalid repository name {name!r}")
    return name


def validate_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise InvalidReference(f"invalid tag {tag!r}")
    return tag


_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A fully qualified image reference."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if any, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.registry, self.repository, validate_tag(tag), None)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """Docker's short form: ``busybox:latest`` for ``docker.io/library/busybox:latest``."""
        repo = self.repository
        if self.registry == DOCKER_HUB:
            if repo.startswith("library/"):
                repo = repo[len("library/"):]
            name = repo
        else:
            name = f"{self.registry}/{repo}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest and not self.tag:
            name += f"@{self.digest}"
        return name


def parse_reference(text: str) -> Reference:
    """Parse a docker-style reference; the tag defaults to ``latest`` when no digest is given."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference {text!r}")
    rest = text
    digest: Digest | None = None
    if "@" in rest:
        rest, _, dig = rest.partition("@")
        try:
            digest = Digest.parse(dig)
        except InvalidDigest as exc:
            raise InvalidReference(str(exc)) from None
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        validate_tag(tag)
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST_RE.match(first):
            raise InvalidReference(f"invalid registry host {first!r}")
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
        if "/" not in path:
            path = f"library/{path}"
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    validate_name(path)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest)
