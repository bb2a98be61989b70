"""The ``audit``, ``quotas`` and ``retention`` sections (Berth's own; Distribution has none of them).

Owned by :mod:`registry.governance`; loaded by :mod:`registry.config`. Shape and static
consistency are checked here; a retention file named by ``retention.file`` is read (and
re-read when it changes) by :mod:`registry.governance.retention`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from registry.configschema import ByteSize, Duration

DEFAULT_AUDIT_MAXSIZE = 100 << 20
DEFAULT_AUDIT_BACKUPS = 5
DEFAULT_RETENTION_SCHEDULE = 0.0  # off: runs only from `berth retention` unless a schedule is set
UNTAGGED_ACTIONS = ("delete", "keep")
_GLOB_RE = re.compile(r"^[a-z0-9._\-/*?]+$")


def globs(value: list[str] | str) -> tuple[str, ...]:
    """``repositories`` as a tuple of globs (one glob may be given as a plain string)."""
    return (value,) if isinstance(value, str) else tuple(value)


def _check_globs(patterns: tuple[str, ...], what: str = "repositories") -> None:
    if not patterns:
        raise ValueError(f"{what} is required")
    for pattern in patterns:
        if not _GLOB_RE.match(pattern):
            raise ValueError(f"{what}: {pattern!r} can never match a repository name")


@dataclass(frozen=True)
class AuditConfig:
    """``audit``: one JSON line per security-relevant event, appended to ``path`` (off when empty)."""

    path: str = ""
    pulls: bool = False  # also record every manifest and blob pull
    maxsize: ByteSize = ByteSize(DEFAULT_AUDIT_MAXSIZE)  # rotate when the file reaches this size
    backups: int = DEFAULT_AUDIT_BACKUPS  # rotated files kept (path.1 ... path.N)

    def validate(self) -> None:
        """A positive size and a non-negative number of backups."""
        if self.maxsize <= 0:
            raise ValueError("maxsize must be positive")
        if self.backups < 0:
            raise ValueError("backups must not be negative")

    @property
    def enabled(self) -> bool:
        """Whether audit lines are written."""
        return bool(self.path)


@dataclass(frozen=True)
class QuotaRule:
    """One ``quotas`` entry: the repositories matching ``repositories`` share ``limit`` stored bytes."""

    repositories: list[str] | str = field(default_factory=list)
    limit: ByteSize = ByteSize(0)

    def validate(self) -> None:
        """Globs that can match, and a positive limit."""
        _check_globs(self.patterns)
        if self.limit <= 0:
            raise ValueError("limit must be positive")

    @property
    def key(self) -> str:
        """The namespace's name in reports and metrics."""
        return ",".join(self.patterns)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The repository globs."""
        return globs(self.repositories)


@dataclass(frozen=True)
class KeepRule:
    """One ``keep`` entry; exactly one of its keys is set."""

    tags: str = ""  # a regular expression a tag must match (re.search)
    mostrecentlypushed: int | None = None
    pushedwithin: Duration | None = None
    pulledwithin: Duration | None = None

    def validate(self) -> None:
        """Exactly one criterion, a valid regex, positive numbers."""
        set_keys = [k for k in ("tags", "mostrecentlypushed", "pushedwithin", "pulledwithin")
                    if getattr(self, k) not in (None, "")]
        if len(set_keys) != 1:
            raise ValueError("set exactly one of tags, mostrecentlypushed, pushedwithin, pulledwithin")
        if self.tags:
            try:
                re.compile(self.tags)
            except re.error as exc:
                raise ValueError(f"tags: not a regular expression: {exc}") from None
        if self.mostrecentlypushed is not None and self.mostrecentlypushed < 0:
            raise ValueError("mostrecentlypushed must not be negative")
        for name in ("pushedwithin", "pulledwithin"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class RetentionPolicy:
    """One ``retention.policies`` entry: which repositories, which tags to keep, what to do with untagged manifests."""

    repositories: list[str] | str = field(default_factory=list)
    keep: list[KeepRule] = field(default_factory=list)
    untagged: str = "delete"

    def validate(self) -> None:
        """Globs that can match and a known ``untagged`` action."""
        _check_globs(self.patterns)
        if self.untagged not in UNTAGGED_ACTIONS:
            raise ValueError(f"untagged must be one of {', '.join(UNTAGGED_ACTIONS)}")

    @property
    def patterns(self) -> tuple[str, ...]:
        """The repository globs."""
        return globs(self.repositories)


@dataclass(frozen=True)
class RetentionConfig:
    """``retention``: policies here or in ``file`` (re-read when it changes), run every ``schedule``."""

    schedule: Duration = Duration(DEFAULT_RETENTION_SCHEDULE)
    file: str = ""
    policies: list[RetentionPolicy] = field(default_factory=list)

    def validate(self) -> None:
        """Policies in one place only; a non-negative schedule."""
        if self.file and self.policies:
            raise ValueError("set policies or file, not both")
        if self.schedule < 0:
            raise ValueError("schedule must not be negative")

    @property
    def configured(self) -> bool:
        """Whether any policy source is set."""
        return bool(self.file or self.policies)
