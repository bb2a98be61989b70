"""Access tokens and robot accounts: secrets that work as passwords, limited by their scopes.

A token belongs to an owner: a user of the htpasswd file, or a robot (``robot$NAME``), an
account that exists only through its tokens. Its secret is ``berth_pat_<id>_<random>``: the
prefix lets secret scanners find leaked ones, ``<id>`` (16 hex digits) names the record, and
``<random>`` is 32 random bytes, urlsafe base64. The secret is shown once, at creation.

Storage: one JSON record per token at :func:`registry.layout.token_record` (and the last-use
time beside it), in the registry's storage, so every replica sees the same tokens. Only the
SHA-256 of the secret is stored. A fast hash is enough here, unlike for passwords: the secret
carries 256 random bits, so no dictionary or brute-force search can find a preimage, and a
slow hash would only cost time on every request.

Guarantees: a token grants at most its scopes intersected with its owner's policy (robots:
only what rules grant them by name or group; see :func:`owner_actions`); records are re-read
from storage at most :data:`CACHE_TTL` seconds after a revocation, so a revoked token stops
working on every replica within a second; expired and revoked tokens are refused with a
reason (:class:`TokenRefused`); the secret never reaches a log line, a record or the list.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from auth.access import ALL, REPOSITORY_ACTIONS
from auth.policy import EVERYTHING, NOTHING, Policy, compile_glob
from registry import layout
from storage_backends.base import PathNotFound, StorageDriver

log = logging.getLogger("berth.auth")

PREFIX = "berth_pat_"
SECRET_BYTES = 32
CACHE_TTL = 1.0  # seconds a token record is trusted before it is re-read (revocation latency)
LAST_USED_INTERVAL = 60.0  # the last-use time is written at most this often per token and process
ROBOT_PREFIX = "robot$"
ADMIN_SCOPE = "admin"  # lets the token use /api/tokens, and /admin/... when its owner is an admin
MAX_SCOPES = 50
MAX_NAME = 64
MAX_TOKENS = 10_000  # records a listing reads

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ROBOT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SECRET_RE = re.compile(r"^berth_pat_([0-9a-f]{16})_([A-Za-z0-9_-]{43,})$")
_GLOB_RE = re.compile(r"^[a-z0-9._\-/*?]+$")


_glob = functools.lru_cache(maxsize=1024)(compile_glob)


class TokenRefused(Exception):
    """A token that cannot be used; ``str()`` is the reason shown to the client."""


class TokenInputError(ValueError):
    """A bad name, scope or expiry when creating a token."""


@dataclass(frozen=True)
class Scope:
    """Actions on the repositories matching ``pattern`` (a policy glob)."""

    pattern: str
    actions: frozenset[str]

    def __str__(self) -> str:
        names = "*" if self.actions == EVERYTHING else ",".join(sorted(self.actions))
        return f"{self.pattern}:{names}"


def parse_scope(text: str) -> Scope | str:
    """``GLOB:ACTIONS`` (``team/*:pull,push``) or the literal ``admin``; raises :class:`TokenInputError`."""
    text = text.strip()
    if text == ADMIN_SCOPE:
        return ADMIN_SCOPE
    pattern, sep, actions = text.rpartition(":")
    if not sep or not pattern or not _GLOB_RE.match(pattern):
        raise TokenInputError(f"scope {text[:100]!r}: expected REPOSITORY-GLOB:ACTIONS (e.g. team/*:pull,push) "
                              f"or {ADMIN_SCOPE}")
    granted: set[str] = set()
    for action in (a.strip() for a in actions.split(",")):
        if action == ALL:
            granted.update(EVERYTHING)
        elif action in REPOSITORY_ACTIONS:
            granted.add(action)
        else:
            raise TokenInputError(f"scope {text[:100]!r}: unknown action {action[:20]!r} "
                                  f"(use {', '.join(REPOSITORY_ACTIONS)} or *)")
    return Scope(pattern, frozenset(granted))


def parse_scopes(values: Iterable[str]) -> tuple[tuple[Scope, ...], bool]:
    """Scopes from CLI or API strings (each may hold several, space-separated); and whether ``admin`` is one."""
    scopes: list[Scope] = []
    admin = False
    for value in values:
        for part in str(value).split():
            parsed = parse_scope(part)
            if parsed == ADMIN_SCOPE:
                admin = True
            else:
                assert isinstance(parsed, Scope)
                scopes.append(parsed)
    if len(scopes) > MAX_SCOPES:
        raise TokenInputError(f"at most {MAX_SCOPES} scopes")
    if not scopes and not admin:
        raise TokenInputError("at least one scope is required")
    return tuple(scopes), admin


def check_name(name: str, what: str = "name") -> str:
    """A token or user name: 1-64 characters of letters, digits, ``.``, ``_`` and ``-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TokenInputError(f"{what} must be 1-{MAX_NAME} letters, digits, '.', '_' or '-'")
    return name


def robot_account(name: str) -> str:
    """The account name of robot ``name`` (``robot$NAME``)."""
    if not isinstance(name, str) or not _ROBOT_RE.match(name):
        raise TokenInputError("robot names are 1-64 lower-case letters, digits, '.', '_' or '-'")
    return ROBOT_PREFIX + name


def is_robot(account: str | None) -> bool:
    """Whether ``account`` names a robot."""
    return bool(account) and str(account).startswith(ROBOT_PREFIX)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_token(password: str) -> bool:
    """Whether a password is an access token (by its prefix)."""
    return password.startswith(PREFIX)


@dataclass(frozen=True)
class TokenRecord:
    """What is stored about a token (no secret)."""

    id: str
    name: str
    owner: str
    scopes: tuple[Scope, ...]
    admin: bool
    created: float
    expires: float | None
    created_by: str
    secret_hash: str = field(repr=False)
    revoked: float | None = None
    revoked_by: str = ""
    last_used: float | None = None

    @property
    def robot(self) -> bool:
        """Whether the owner is a robot."""
        return is_robot(self.owner)

    def scope_actions(self, repository: str) -> frozenset[str]:
        """The actions the token's scopes name on ``repository``."""
        granted: set[str] = set()
        for scope in self.scopes:
            if _glob(scope.pattern).fullmatch(repository):
                granted.update(scope.actions)
        return frozenset(granted)

    def refusal(self, now: float) -> str:
        """Why the token cannot be used now ('' when it can)."""
        if self.revoked is not None:
            return "access token revoked"
        if self.expires is not None and now >= self.expires:
            return "access token expired"
        return ""

    def to_storage(self) -> dict[str, Any]:
        """The stored JSON document."""
        return {"id": self.id, "name": self.name, "owner": self.owner, "scopes": [str(s) for s in self.scopes],
                "admin": self.admin, "created": self.created, "expires": self.expires,
                "createdBy": self.created_by, "sha256": self.secret_hash, "revoked": self.revoked,
                "revokedBy": self.revoked_by}

    @classmethod
    def from_storage(cls, data: bytes, last_used: float | None = None) -> TokenRecord:
        """Parse a stored record; raises ``ValueError`` if it is damaged."""
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("token record is not an object")
        scopes, _ = parse_scopes(doc.get("scopes") or []) if doc.get("scopes") else ((), False)
        return cls(id=layout.validate_token_id(doc["id"]), name=str(doc["name"]), owner=str(doc["owner"]),
                   scopes=scopes, admin=bool(doc.get("admin")), created=float(doc["created"]),
                   expires=None if doc.get("expires") is None else float(doc["expires"]),
                   created_by=str(doc.get("createdBy", "")), secret_hash=str(doc["sha256"]),
                   revoked=None if doc.get("revoked") is None else float(doc["revoked"]),
                   revoked_by=str(doc.get("revokedBy", "")), last_used=last_used)

    def to_json(self) -> dict[str, Any]:
        """The listing form (``berth token list``, ``GET /admin/tokens``): never the secret or its hash."""
        return {"id": self.id, "name": self.name, "owner": self.owner, "robot": self.robot,
                "scopes": [str(s) for s in self.scopes] + ([ADMIN_SCOPE] if self.admin else []),
                "created": _iso(self.created), "expires": _iso(self.expires), "lastUsed": _iso(self.last_used),
                "createdBy": self.created_by, "revoked": _iso(self.revoked), "revokedBy": self.revoked_by,
                "status": self.refusal(time.time()).replace("access token ", "") or "active"}


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def owner_actions(policy: Policy, owner: str, repository: str, *, has_policy: bool) -> frozenset[str]:
    """What the owner of a token may do on ``repository``: a user's policy actions; a robot's
    grants from rules naming it (``users``, or a group listing it) when a policy file exists,
    everything without one (registry:2's "every account may do everything")."""
    if not is_robot(owner):
        return policy.actions(owner, repository)
    if not has_policy:
        return EVERYTHING if policy.actions(owner, repository) else NOTHING
    granted: set[str] = set()
    groups = policy.groups_of(owner)
    for rule in policy.rules:
        if rule.matches(repository):
            granted.update(rule.users.get(owner, NOTHING))
            for group in groups:
                granted.update(rule.groups.get(group, NOTHING))
    if any(r.immutable for r in policy.rules if r.matches(repository)):
        granted.discard("overwrite")
    return frozenset(granted)


class TokenStore:
    """Token records in the registry's storage, cached for at most :data:`CACHE_TTL` seconds."""

    def __init__(self, driver: StorageDriver, *, cache_ttl: float = CACHE_TTL) -> None:
        self.driver = driver
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}
        self._touched: dict[str, float] = {}

    async def create(self, *, owner: str, name: str, scopes: Iterable[str], expires_in: float | None,
                     created_by: str, now: float | None = None) -> tuple[TokenRecord, str]:
        """Store a new token; returns its record and its secret (the only time the secret exists)."""
        if not is_robot(owner):
            check_name(owner, "owner")
        check_name(name)
        parsed, admin = parse_scopes(scopes)
        if expires_in is not None and expires_in <= 0:
            raise TokenInputError("expiry must be positive")
        now = time.time() if now is None else now
        token_id = secrets.token_hex(8)
        secret = f"{PREFIX}{token_id}_{base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip('=')}"
        record = TokenRecord(id=token_id, name=name, owner=owner, scopes=parsed, admin=admin, created=now,
                             expires=None if expires_in is None else now + expires_in, created_by=created_by,
                             secret_hash=hash_secret(secret))
        await self.driver.put_content(layout.token_record(token_id), json.dumps(record.to_storage()).encode())
        self._cache.pop(token_id, None)
        return record, secret

    async def _read(self, token_id: str, *, last_used: bool = False) -> TokenRecord | None:
        try:
            data = await self.driver.get_content(layout.token_record(token_id))
        except PathNotFound:
            return None
        used: float | None = None
        if last_used:
            try:
                used = float((await self.driver.get_content(layout.token_last_used(token_id))).decode())
            except (PathNotFound, ValueError):
                used = None
        try:
            return TokenRecord.from_storage(data, used)
        except (ValueError, KeyError, TypeError, TokenInputError):
            log.error("token record %s is damaged; refusing the token", token_id)
            return None

    async def get(self, token_id: str) -> TokenRecord | None:
        """The record (read fresh, with its last-use time), or None."""
        try:
            layout.validate_token_id(token_id)
        except layout.InvalidTokenId:
            return None
        return await self._read(token_id, last_used=True)

    async def cached(self, token_id: str) -> TokenRecord | None:
        """The record as of at most ``cache_ttl`` seconds ago (the request path)."""
        now = time.monotonic()
        hit = self._cache.get(token_id)
        if hit is not None and now - hit[0] < self.cache_ttl:
            return hit[1]
        record = await self._read(token_id)
        if len(self._cache) >= MAX_TOKENS:
            self._cache.clear()
        self._cache[token_id] = (now, record)
        return record

    async def list(self, owner: str | None = None) -> list[TokenRecord]:
        """Every token (of ``owner``), oldest first, with last-use times."""
        try:
            paths = await self.driver.list(layout.TOKENS_DIR)
        except PathNotFound:
            return []
        ids = sorted({p.rsplit("/", 1)[-1].split(".", 1)[0] for p in paths if p.endswith(".json")})[:MAX_TOKENS]
        records = await asyncio.gather(*(self.get(i) for i in ids))
        out = [r for r in records if r is not None and (owner is None or r.owner == owner)]
        return sorted(out, key=lambda r: (r.created, r.id))

    async def revoke(self, token_id: str, *, by: str, now: float | None = None) -> TokenRecord:
        """Mark a token revoked (kept, so its use is refused with a reason); KeyError if unknown."""
        record = await self.get(token_id)
        if record is None:
            raise KeyError(token_id)
        if record.revoked is None:
            doc = record.to_storage()
            doc["revoked"] = time.time() if now is None else now
            doc["revokedBy"] = by
            await self.driver.put_content(layout.token_record(token_id), json.dumps(doc).encode())
            record = TokenRecord.from_storage(json.dumps(doc).encode(), record.last_used)
        self._cache.pop(token_id, None)
        return record

    async def authenticate(self, secret: str, username: str | None = None) -> TokenRecord:
        """The record of a valid token, or :class:`TokenRefused` with the reason.

        ``username`` (from Basic credentials) must name the token's owner (for robots, the
        robot's account ``robot$NAME`` or its bare name), as Docker Hub requires.
        """
        m = _SECRET_RE.match(secret)
        if m is None:
            raise TokenRefused("malformed access token")
        record = await self.cached(m.group(1))
        if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
            raise TokenRefused("unknown access token")
        reason = record.refusal(time.time())
        if reason:
            raise TokenRefused(reason)
        if username and username not in (record.owner, record.owner.removeprefix(ROBOT_PREFIX)):
            raise TokenRefused("access token belongs to another account")
        await self._touch(record)
        return record

    async def _touch(self, record: TokenRecord) -> None:
        now = time.time()
        if now - self._touched.get(record.id, 0.0) < LAST_USED_INTERVAL:
            return
        if len(self._touched) >= MAX_TOKENS:
            self._touched.clear()
        self._touched[record.id] = now
        try:
            await self.driver.put_content(layout.token_last_used(record.id), f"{now:.3f}".encode())
        except Exception:  # the last-use time is informative; never fail a login over it
            log.warning("could not record the last use of token %s", record.id)


def parse_expiry(text: str | None) -> float | None:
    """``90d``, ``12h``, ``30m`` or ``never``/None → seconds (None: no expiry)."""
    if text is None or str(text).strip().lower() in ("", "never", "none"):
        return None
    from registry.configschema import Duration

    raw = str(text).strip()
    m = re.fullmatch(r"(\d+)d", raw)
    try:
        value = float(m.group(1)) * 86400 if m else float(Duration.parse(raw))
    except ValueError:
        raise TokenInputError(f"invalid expiry {raw[:40]!r} (e.g. 90d, 12h)") from None
    if value <= 0:
        raise TokenInputError("expiry must be positive")
    return value
