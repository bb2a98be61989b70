"""The ``auth`` section of the config (Distribution's keys, plus Berth's token service and policy).

Owned by the auth package; loaded by :mod:`registry.config`. Only shape and
static consistency are checked here; files (htpasswd, keys, certificates, the
policy) are read when the app starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.configschema import Duration

# Asymmetric JWS algorithms a token may be signed with. ``none`` and the HMAC family are
# never accepted: a registry holds no shared secret with the token issuer.
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_TOKEN_LIFETIME = 300.0
DEFAULT_REFRESH_LIFETIME = 30 * 86400.0
DEFAULT_ISSUER = "berth-token-service"
DEFAULT_SERVICE = "berth-registry"
DEFAULT_LOGIN_FAILURES = 10
DEFAULT_LOGIN_WINDOW = 60.0


@dataclass(frozen=True)
class HtpasswdAuth:
    """``auth.htpasswd``: Basic auth against a bcrypt htpasswd file."""

    realm: str = "Berth Registry"
    path: str = ""

    def validate(self) -> None:
        """Require the file path."""
        if not self.path:
            raise ValueError("path is required")


@dataclass(frozen=True)
class TokenAuth:
    """``auth.token``: bearer tokens from an external issuer or Berth's own token service.

    With ``signingkey`` set, Berth runs its own token service at ``/auth/token``
    (users from ``htpasswd``); ``realm``, ``issuer`` and ``service`` then have
    defaults. Without it, ``rootcertbundle`` or ``jwks`` names the issuer's keys
    and ``realm``, ``issuer`` and ``service`` are required.
    """

    realm: str = ""
    service: str = ""
    issuer: str = ""
    rootcertbundle: str = ""
    jwks: str = ""
    autoredirect: bool = False
    autoredirectpath: str = "/auth/token"
    signingalgorithms: list[str] | None = None
    # Berth's built-in token service (enabled when signingkey is set):
    signingkey: str = ""
    htpasswd: str = ""
    expiration: Duration = Duration(DEFAULT_TOKEN_LIFETIME)
    refreshexpiration: Duration = Duration(DEFAULT_REFRESH_LIFETIME)

    def validate(self) -> None:
        """Check that a key source is named and the names an external issuer needs are set."""
        if not self.signingkey and not (self.rootcertbundle or self.jwks):
            raise ValueError("set rootcertbundle or jwks (external issuer), or signingkey (built-in token service)")
        if not self.signingkey:
            for name in ("realm", "service", "issuer"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required")
        if self.htpasswd and not self.signingkey:
            raise ValueError("htpasswd is only used by the built-in token service (set signingkey)")
        for alg in self.signingalgorithms or ():
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"signingalgorithms: {alg!r} is not one of {', '.join(SUPPORTED_ALGORITHMS)}")
        if self.signingalgorithms is not None and not self.signingalgorithms:
            raise ValueError("signingalgorithms must not be empty")
        if self.expiration <= 0 or self.refreshexpiration <= 0:
            raise ValueError("expiration and refreshexpiration must be positive")

    @property
    def builtin(self) -> bool:
        """Whether Berth's own token service is enabled."""
        return bool(self.signingkey)

    @property
    def issuer_name(self) -> str:
        """The ``iss`` Berth issues and accepts."""
        return self.issuer or DEFAULT_ISSUER

    @property
    def service_name(self) -> str:
        """The ``aud``/``service`` Berth issues and accepts."""
        return self.service or DEFAULT_SERVICE

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The pinned list of accepted signature algorithms."""
        return tuple(self.signingalgorithms or SUPPORTED_ALGORITHMS)


@dataclass(frozen=True)
class PolicyRef:
    """``auth.policy``: the access policy file."""

    path: str = ""

    def validate(self) -> None:
        """Require the file path."""
        if not self.path:
            raise ValueError("path is required")


@dataclass(frozen=True)
class LoginLimit:
    """``auth.loginlimit``: answer 429 to a client after ``failures`` failed logins within ``window``."""

    failures: int = DEFAULT_LOGIN_FAILURES
    window: Duration = Duration(DEFAULT_LOGIN_WINDOW)

    def validate(self) -> None:
        """Non-negative counts and a positive window (``failures: 0`` disables the limit)."""
        if self.failures < 0:
            raise ValueError("failures must not be negative")
        if self.window <= 0:
            raise ValueError("window must be positive")


@dataclass(frozen=True)
class AuthConfig:
    """``auth``: at most one of htpasswd and token; policy applies to either."""

    htpasswd: HtpasswdAuth | None = None
    token: TokenAuth | None = None
    policy: PolicyRef | None = None
    loginlimit: LoginLimit = field(default_factory=LoginLimit)

    def validate(self) -> None:
        """One mode at most; a policy needs a mode that authenticates users."""
        if self.htpasswd and self.token:
            raise ValueError("configure only one of htpasswd and token")
        if self.policy and not self.enabled:
            raise ValueError("policy needs htpasswd or token authentication")

    @property
    def enabled(self) -> bool:
        """Whether requests are authenticated at all."""
        return bool(self.htpasswd or self.token)
