"""The registry's error table and the one exception type handlers raise.

Every error code of the OCI distribution spec (plus Docker's extras) is declared
once here with its HTTP status and default message. Handlers and services only
*raise* :class:`RegistryError`; the error middleware (``registry.middlewares``)
is the single place that renders it as ``{"errors": [{code, message, detail}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping


@dataclass(frozen=True)
class _Code:
    status: int
    message: str


class ErrorCode(Enum):
    """Spec error codes with their HTTP status and default message."""

    BLOB_UNKNOWN = _Code(404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = _Code(400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = _Code(404, "blob upload unknown to registry")
    DIGEST_INVALID = _Code(400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = _Code(400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = _Code(400, "manifest invalid")
    MANIFEST_UNKNOWN = _Code(404, "manifest unknown to registry")
    NAME_INVALID = _Code(400, "invalid repository name")
    NAME_UNKNOWN = _Code(404, "repository name not known to registry")
    SIZE_INVALID = _Code(400, "provided length did not match content length")
    TAG_INVALID = _Code(400, "invalid tag")
    UNAUTHORIZED = _Code(401, "authentication required")
    DENIED = _Code(403, "requested access to the resource is denied")
    UNSUPPORTED = _Code(405, "the operation is unsupported")
    TOOMANYREQUESTS = _Code(429, "too many requests")
    RANGE_INVALID = _Code(416, "invalid content range")
    PAGINATION_NUMBER_INVALID = _Code(400, "invalid number of results requested")
    SIZE_TOO_LARGE = _Code(413, "content exceeds the size limit")
    NOT_FOUND = _Code(404, "not found")
    METHOD_NOT_ALLOWED = _Code(405, "method not allowed")
    UNAVAILABLE = _Code(503, "service unavailable")
    READ_ONLY = _Code(405, "registry is in read-only mode")
    UNKNOWN = _Code(500, "unknown error")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def message(self) -> str:
        return self.value.message

    @property
    def wire_name(self) -> str:
        """The code as it appears on the wire (READ_ONLY is sent as UNSUPPORTED)."""
        return "UNSUPPORTED" if self is ErrorCode.READ_ONLY else self.name


class RegistryError(Exception):
    """An error with a spec code; rendered by the error middleware.

    ``headers`` are added to the response (e.g. ``Range`` on a 416 or
    ``WWW-Authenticate`` on a 401); ``status`` overrides the code's default.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = dict(headers or {})
        super().__init__(f"{code.name}: {self.message}")

    def body(self) -> bytes:
        """The spec's JSON error document for this error."""
        entry: dict[str, Any] = {"code": self.code.wire_name, "message": self.message}
        entry["detail"] = self.detail if self.detail is not None else {}
        return json.dumps({"errors": [entry]}).encode()
