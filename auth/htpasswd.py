"""Users and passwords from an Apache htpasswd file (bcrypt entries only), checked in constant time.

Guarantees: every password check that is not a remembered success does the same
bcrypt work, ``2**max_cost`` rounds where ``max_cost`` is the file's highest cost,
in a thread: an unknown user is checked against a dummy hash of that cost; a user
whose own hash is cheaper (cost ``c``) is checked against it and then against
dummies of costs ``c .. max_cost-1`` (``2**c + 2**c + ... + 2**(max_cost-1) =
2**max_cost``), so neither existence nor a user's cost shows in the answer time. Successful checks are remembered for
a short while as an HMAC under a per-process random key (never the password),
so clients that send Basic credentials on every request do not pay bcrypt each
time; the memory is dropped whenever the file changes. Non-bcrypt entries are
ignored with a warning naming only the user. The file is re-read when it changes.

:func:`edit_htpasswd` (``berth user add|passwd|remove``) writes the file atomically
(temp file, fsync, rename; mode 0600), keeping every other line as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
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
    """A parsed htpasswd file: user name -> bcrypt hash, a hash of the file's highest cost to check
    unknown users against, and padding dummies (cost -> hash) for the costs below it."""

    hashes: Mapping[str, bytes] = field(repr=False)
    dummy: bytes = field(repr=False)
    padding: Mapping[int, bytes] = field(default_factory=dict, repr=False)

    @property
    def max_cost(self) -> int:
        """The cost every check pays (the dummy's)."""
        return cost_of(self.dummy)

    def checks_for(self, username: str) -> list[bytes]:
        """The hashes one check of ``username`` runs, first the one that decides: together always
        ``2**max_cost`` bcrypt rounds."""
        own = self.hashes.get(username)
        if own is None:
            return [self.dummy]
        cost = cost_of(own)
        return [own] + [self.padding[c] for c in range(cost, self.max_cost) if c in self.padding]

    def fingerprint(self, username: str) -> str:
        """A short digest of the user's entry: changes when the password changes ('' if unknown)."""
        entry = self.hashes.get(username)
        if entry is None:
            return ""
        return hashlib.sha256(b"berth-htpasswd:" + entry).hexdigest()[:16]


MIN_COST, MAX_COST = 4, 31  # what bcrypt accepts


def cost_of(hashed: bytes) -> int:
    """A bcrypt hash's cost (log2 of its rounds), clamped to what bcrypt accepts."""
    try:
        cost = int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        cost = DEFAULT_DUMMY_COST
    return min(max(cost, MIN_COST), MAX_COST)


def _dummy(cost: int) -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))


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
    costs = {cost_of(h) for h in hashes.values()}
    top = max(costs, default=DEFAULT_DUMMY_COST)
    lowest = min(costs, default=top)
    # Making the padding costs about as much as one check at the top cost, once per (re)load.
    padding = {c: _dummy(c) for c in range(lowest, top)}
    return Users(hashes, _dummy(top), padding)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a corrupt hash in the file
        return False


def _check_all(password: bytes, hashes: list[bytes]) -> bool:
    """Check ``password`` against every hash (all of them, always); whether the first matched."""
    results = [_checkpw(password, h) for h in hashes]
    return results[0]


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
        ok = await asyncio.to_thread(_check_all, secret, users.checks_for(username))
        ok = ok and hashed is not None
        if ok and users is self._cached_for:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[username] = (self._mac(username, secret), now + CACHE_TTL)
        return ok


# --- writing (``berth user``) ---------------------------------------------------------------------

DEFAULT_WRITE_COST = 10  # bcrypt cost of passwords ``berth user`` writes (Apache's htpasswd -B uses 5)
MAX_USERNAME = 255


class HtpasswdEditError(ValueError):
    """A user edit that cannot be done (bad name, user exists or is missing); the message says which."""


def check_username(username: str) -> str:
    """A name that fits an htpasswd line: no ``:``, whitespace or control characters, 1-255 characters."""
    if not username or len(username) > MAX_USERNAME or ":" in username or any(
            c.isspace() or ord(c) < 32 or ord(c) == 127 for c in username):
        raise HtpasswdEditError(f"invalid user name {username[:64]!r}: use 1-{MAX_USERNAME} characters "
                                f"without ':', spaces or control characters")
    return username


def hash_password(password: str, cost: int = DEFAULT_WRITE_COST) -> bytes:
    """A bcrypt hash of ``password`` (its first 72 bytes, as bcrypt and htpasswd read them); blocking."""
    if not MIN_COST <= cost <= MAX_COST:
        raise HtpasswdEditError(f"bcrypt cost must be between {MIN_COST} and {MAX_COST}")
    return bcrypt.hashpw(password.encode("utf-8")[:BCRYPT_MAX_PASSWORD], bcrypt.gensalt(cost))


def edit_htpasswd(path: str, username: str, hashed: bytes | None, *, exists: bool) -> None:
    """Set (``hashed``) or remove (None) ``username``'s entry in the htpasswd file at ``path``.

    ``exists`` says whether the user must already be there (passwd, remove) or must not (add).
    Every other line is kept byte for byte. The new file is written next to the old one
    (mode 0600, fsync) and renamed over it, so readers see the old or the new file, never half.
    """
    check_username(username)
    try:
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        lines = []
    prefix = username.encode("utf-8") + b":"
    found = [i for i, line in enumerate(lines) if line.strip().startswith(prefix)]
    if exists and not found:
        raise HtpasswdEditError(f"no user {username!r} in {path}")
    if not exists and found:
        raise HtpasswdEditError(f"user {username!r} already exists in {path} (use `berth user passwd`)")
    if hashed is None:
        lines = [line for i, line in enumerate(lines) if i not in found]
    elif found:
        lines[found[0]] = prefix + hashed
        lines = [line for i, line in enumerate(lines) if i not in found[1:]]
    else:
        lines.append(prefix + hashed)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(line + b"\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
