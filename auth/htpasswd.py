"""Users and passwords from an Apache htpasswd file (bcrypt entries only), checked in constant time.

Guarantees: every password check runs ``bcrypt.checkpw`` in a thread, also for
unknown users (against a dummy hash of the file's highest cost), so the answer
time does not tell whether a user exists. Successful checks are remembered for
a short while as an HMAC under a per-process random key (never the password),
so clients that send Basic credentials on every request do not pay bcrypt each
time; the memory is dropped whenever the file changes. Non-bcrypt entries are
ignored with a warning naming only the user. The file is re-read when it changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Mapping

import bcrypt

from auth.watch import DEFAULT_CHECK_INTERVAL, WatchedFile

log = logging.getLogger("berth.auth")

BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
BCRYPT_MAX_PASSWORD = 72  # bcrypt only reads this many bytes; htpasswd truncates the same way
DEFAULT_DUMMY_COST = 10
CACHE_TTL = 300.0
CACHE_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Users:
    """A parsed htpasswd file: user name -> bcrypt hash, and a hash to burn time on for unknown users."""

    hashes: Mapping[str, bytes] = field(repr=False)
    dummy: bytes = field(repr=False)

    def fingerprint(self, username: str) -> str:
        """A short digest of the user's entry: changes when the password changes ('' if unknown)."""
        entry = self.hashes.get(username)
        if entry is None:
            return ""
        return hashlib.sha256(b"berth-htpasswd:" + entry).hexdigest()[:16]


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return DEFAULT_DUMMY_COST


def parse_htpasswd(data: bytes, *, source: str = "htpasswd") -> Users:
    """Parse htpasswd text; blocking (it makes the dummy hash), so call it in a thread."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{source} is not UTF-8 text") from None
    hashes: dict[str, bytes] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("%s line %d: not a user:hash entry; ignored", source, lineno)
            continue
        value = hashed.strip().encode("ascii", "replace")
        if not value.startswith(BCRYPT_PREFIXES):
            log.warning("%s line %d: user %r has no bcrypt hash (only bcrypt is supported); ignored",
                        source, lineno, user)
            continue
        hashes.setdefault(user, value)
    cost = max((_cost(h) for h in hashes.values()), default=DEFAULT_DUMMY_COST)
    dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(min(max(cost, 4), 31)))
    return Users(hashes, dummy)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a corrupt hash in the file
        return False


class Htpasswd:
    """Password checks against an htpasswd file that is reloaded when it changes."""

    def __init__(self, path: str, *, interval: float = DEFAULT_CHECK_INTERVAL) -> None:
        self._file: WatchedFile[Users] = WatchedFile(
            path, lambda data: parse_htpasswd(data, source=path), what="htpasswd file", interval=interval)
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._cached_for: Users | None = None

    @property
    def path(self) -> str:
        """The file's path."""
        return self._file.path

    async def load(self) -> None:
        """Read the file for the first time; raises ``OSError``/``ValueError`` if it is unusable."""
        await self._file.load()

    async def users(self) -> Users:
        """The current users (re-read if the file changed)."""
        users = await self._file.get()
        if users is not self._cached_for:
            self._cache.clear()
            self._cached_for = users
        return users

    def _mac(self, username: str, password: bytes) -> bytes:
        return hmac.new(self._cache_key, username.encode() + b"\0" + password, hashlib.sha256).digest()

    async def verify(self, username: str, password: str) -> bool:
        """Whether ``password`` is the user's; unknown users take as long as known ones."""
        users = await self.users()
        secret = password.encode("utf-8")[:BCRYPT_MAX_PASSWORD]
        hashed = users.hashes.get(username)
        now = time.monotonic()
        if hashed is not None:
            cached = self._cache.get(username)
            if cached is not None and cached[1] > now and hmac.compare_digest(cached[0], self._mac(username, secret)):
                return True
        ok = await asyncio.to_thread(_checkpw, secret, hashed if hashed is not None else users.dummy)
        ok = ok and hashed is not None
        if ok and users is self._cached_for:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[username] = (self._mac(username, secret), now + CACHE_TTL)
        return ok
