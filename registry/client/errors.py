"""The client's error types: every failure the `berth` verbs can report, with its exit code.

Each exception carries one actionable line (``str(exc)``) and an ``exit_code``;
the CLI prints the line and exits with the code, never a traceback. The codes
are documented in ``docs/client.md``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_DIGEST = 5
EXIT_NETWORK = 6
EXIT_PLATFORM = 7
EXIT_ARCHIVE = 8
EXIT_REGISTRY = 9
EXIT_INTERRUPTED = 130


class ClientError(Exception):
    """Base of every error the client reports; ``str()`` is the one line shown to the user."""

    exit_code = EXIT_ERROR


class UsageError(ClientError):
    """The command line or an argument (a reference, a platform) is malformed."""

    exit_code = EXIT_USAGE


class AuthError(ClientError):
    """The registry refused the credentials (401) or the access (403)."""

    exit_code = EXIT_AUTH


class NotFound(ClientError):
    """A manifest, blob, repository or local image does not exist."""

    exit_code = EXIT_NOT_FOUND


class DigestMismatch(ClientError):
    """Content did not match the digest (or size) it was announced with."""

    exit_code = EXIT_DIGEST


class NetworkError(ClientError):
    """The registry could not be reached: connection refused, TLS failure, timeout, reset."""

    exit_code = EXIT_NETWORK


class NoSuchPlatform(ClientError):
    """An index has no manifest for the requested platform."""

    exit_code = EXIT_PLATFORM


class ArchiveError(ClientError):
    """A tar archive is corrupt, truncated or of an unknown shape."""

    exit_code = EXIT_ARCHIVE


class RegistryResponseError(ClientError):
    """The registry answered with an error the client cannot act on (4xx/5xx, a bad manifest)."""

    exit_code = EXIT_REGISTRY

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
