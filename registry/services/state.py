"""The signed upload state carried in upload ``Location`` URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from registry.errors import ErrorCode, RegistryError


class UploadState:
    """Signs and verifies the ``_state`` token carried in upload ``Location`` URLs.

    The token binds an upload id to its repository (and records the offset and
    start time at signing), so any replica holding the same secret can continue
    an upload it did not start. Storage stays the source of truth for offsets.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, name: str, upload_id: str, offset: int, started_at: str) -> str:
        payload = json.dumps({"n": name, "u": upload_id, "o": offset, "s": started_at}, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def verify(self, token: str, name: str, upload_id: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid upload state") from None
        mac, payload = raw[:32], raw[32:]
        if len(mac) != 32 or not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).digest()):
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload state signature is invalid")
        try:
            state = json.loads(payload)
        except ValueError:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "invalid upload state") from None
        if not isinstance(state, dict) or state.get("n") != name or state.get("u") != upload_id:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload state does not match this upload")
        return state

