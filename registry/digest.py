"""Content digests: parsing, validation and streaming hashers (pure; shared with the client).

A digest is ``<algorithm>:<hex>``; Berth accepts ``sha256`` (64 hex) and ``sha512``
(128 hex), lower-case only. Parsing is strict, so a parsed :class:`Digest` is
always safe to use as a path component.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

# The spec's general grammar; used to tell "malformed" from "unsupported algorithm".
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class InvalidDigest(ValueError):
    """The string is not a digest Berth supports."""


@dataclass(frozen=True, order=True)
class Digest:
    """A validated digest."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> "Digest":
        if not isinstance(value, str) or not _GRAMMAR.match(value):
            raise InvalidDigest(f"invalid digest {value!r}")
        alg, _, hexpart = value.partition(":")
        length = ALGORITHMS.get(alg)
        if length is None:
            raise InvalidDigest(f"unsupported digest algorithm {alg!r}")
        if len(hexpart) != length or not re.fullmatch(r"[0-9a-f]+", hexpart):
            raise InvalidDigest(f"invalid {alg} digest {value!r}")
        return cls(alg, hexpart)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> "Digest":
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Any:
        """A fresh hashlib object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def new_hasher(algorithm: str = DEFAULT_ALGORITHM) -> Any:
    if algorithm not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def is_digest(value: str) -> bool:
    try:
        Digest.parse(value)
    except InvalidDigest:
        return False
    return True
