"""What a request needs, as a pure function of method, path and query; scopes and their grammar.

:func:`required_access` uses :func:`registry.routes.match` — the same grammar
the dispatcher routes with — so access control and routing always agree on
which repository a request touches. An :class:`Access` is Distribution's
resource-and-actions triple; :func:`parse_scope` and :meth:`Access.scope`
convert to and from the ``type:name:actions`` strings of token requests and
challenges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from registry.reference import is_valid_name
from registry.routes import Kind, match

REPOSITORY = "repository"
REGISTRY = "registry"
PULL = "pull"
PUSH = "push"
DELETE = "delete"
OVERWRITE = "overwrite"
ALL = "*"
CATALOG = "catalog"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE, OVERWRITE)
MAX_SCOPE_LENGTH = 1024
MAX_SCOPES = 100  # per token request; a push needs a handful (target plus mount sources)

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, order=True)
class Access:
    """A resource (``type``, ``name``) and the actions wanted or granted on it (sorted, unique)."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def of(cls, type_: str, name: str, actions: Iterable[str]) -> "Access":
        """Build with the actions normalised (unique, sorted)."""
        return cls(type_, name, tuple(sorted(set(actions))))

    @property
    def scope(self) -> str:
        """The ``type:name:a,b`` form used in token requests and challenges."""
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    @property
    def resource(self) -> tuple[str, str]:
        """The (type, name) pair this access is about."""
        return (self.type, self.name)

    def to_claim(self) -> dict[str, object]:
        """The JWT ``access`` claim entry."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


CATALOG_ACCESS = Access(REGISTRY, CATALOG, (ALL,))


def merge(accesses: Iterable[Access]) -> list[Access]:
    """Combine entries for the same resource (repeated scopes) into one, in first-seen order."""
    order: list[tuple[str, str]] = []
    actions: dict[tuple[str, str], set[str]] = {}
    for access in accesses:
        if access.resource not in actions:
            order.append(access.resource)
            actions[access.resource] = set()
        actions[access.resource].update(access.actions)
    return [Access.of(t, n, actions[(t, n)]) for t, n in order]


def parse_scope(scope: str) -> Access | None:
    """Parse one ``type[(class)]:name:actions`` scope; None if it is malformed.

    The name is everything between the first and the last ``:`` (as Distribution
    parses it), so a name containing ``:`` survives parsing and is then refused
    by :func:`is_grantable`. The resource class (``repository(plugin)``) is dropped.
    """
    if not scope or len(scope) > MAX_SCOPE_LENGTH:
        return None
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last == first:
        return None
    type_, name, actions = scope[:first], scope[first + 1:last], scope[last + 1:]
    if "(" in type_:
        base, _, rest = type_.partition("(")
        if not rest.endswith(")") or not base:
            return None
        type_ = base
    if not name:
        return None
    wanted = [a for a in actions.split(",") if a]
    if not wanted:
        return None
    return Access.of(type_, name, wanted)


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Parse scope parameters (each may hold several space-separated scopes), merged; bad ones dropped.

    At most :data:`MAX_SCOPES` resources are kept (the rest are ignored, never an error).
    """
    parsed: list[Access] = []
    for value in values:
        for part in value.split():
            access = parse_scope(part)
            if access is not None:
                parsed.append(access)
    return merge(parsed)[:MAX_SCOPES]


def is_grantable(access: Access) -> bool:
    """Whether ``access`` names something that can be granted at all.

    Repository names must follow the spec grammar exactly (no upper case,
    ``..``, ``:``, ``%``, empty components or trailing slashes); the only
    registry resource is the catalog.
    """
    if access.type == REPOSITORY:
        return is_valid_name(access.name)
    if access.type == REGISTRY:
        return access.name == CATALOG
    return False


def _repository_action(method: str, kind: Kind) -> str:
    if kind in (Kind.UPLOAD_START, Kind.UPLOAD):
        return PUSH  # every upload request (status and cancel included) is part of a push
    if method in _READ_METHODS:
        return PULL
    if method == "DELETE":
        return DELETE
    return PUSH


def required_access(method: str, path: str, query: Mapping[str, str]) -> list[Access]:
    """The accesses a request needs. ``path`` is percent-decoded, as the dispatcher sees it.

    An empty list means "any authenticated caller" (``/v2/`` itself, and paths that
    are no API route, which answer 404 only to authenticated callers). A cross-repository
    mount also needs ``pull`` on the ``from`` repository; the catalog needs
    ``registry:catalog:*``.
    """
    route = match(path)
    if route is None or route.kind == Kind.BASE:
        return []
    if route.kind == Kind.CATALOG:
        return [CATALOG_ACCESS]
    method = method.upper()
    needed = [Access(REPOSITORY, route.name, (_repository_action(method, route.kind),))]
    if route.kind == Kind.UPLOAD_START and method == "POST" and "mount" in query:
        source = query.get("from")
        if source:
            needed.append(Access(REPOSITORY, source, (PULL,)))
    return merge(needed)


def covers(granted: Iterable[str], action: str) -> bool:
    """Whether a granted action list includes ``action`` (``*`` grants every action)."""
    actions = set(granted)
    return ALL in actions or action in actions
