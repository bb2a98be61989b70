"""Delivery signatures: ``Berth-Signature: t=<unix>,v1=<hex>`` (pure; receivers import :func:`verify`).

``v1`` is HMAC-SHA256, keyed with the endpoint's ``secret``, over
``<t>.<body>``: the decimal timestamp, a dot, and the exact request body
bytes. Binding the timestamp into the MAC lets a receiver reject replays of
an old delivery (outside ``tolerance``) without trusting anything unsigned;
deduplicating on the event ``id`` covers redeliveries inside the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Berth-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or does not match the body."""


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``Berth-Signature`` header value for ``body`` at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={_mac(secret, t, body)}"


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a delivery: raise :class:`SignatureError` unless ``header`` signs ``body`` recently.

    ``body`` must be the raw request bytes (not re-serialised JSON). The header's
    timestamp must be within ``tolerance`` seconds of ``now`` (default: the
    current time), which bounds how long a captured delivery can be replayed.
    Returns the signed timestamp.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if not value.isdigit():
                raise SignatureError(f"malformed timestamp in {SIGNATURE_HEADER} header")
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} header needs t= and {SCHEME}=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"signature timestamp is outside the {tolerance:g}s tolerance")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match the body")
    return timestamp
