"""The ``auth`` section of the config (Distribution's keys, plus Berth's token service and policy).

Owned by the auth package; loaded by :mod:`registry.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.configschema import Duration


@dataclass(frozen=True)
class HtpasswdAuth:
    """``auth.htpasswd``: Basic auth against a bcrypt htpasswd file."""

    realm: str = "Berth Registry"
    path: str = ""

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path is required")


@dataclass(frozen=True)
class TokenAuth:
    """``auth.token``: bearer tokens from an external issuer or Berth's own token service."""

    realm: str = ""
    service: str = ""
    issuer: str = ""
    rootcertbundle: str = ""
    jwks: str = ""
    autoredirect: bool = False
    signingalgorithms: list[str] | None = None
    # Berth's built-in token service (enabled when signingkey is set):
    signingkey: str = ""
    htpasswd: str = ""
    expiration: Duration = Duration(300)
    refreshexpiration: Duration = Duration(30 * 86400)

    def validate(self) -> None:
        if not self.signingkey and not (self.rootcertbundle or self.jwks):
            raise ValueError("set rootcertbundle or jwks (external issuer), or signingkey (built-in token service)")
        if not self.service:
            raise ValueError("service is required")
        if not self.issuer:
            raise ValueError("issuer is required")


@dataclass(frozen=True)
class PolicyRef:
    """``auth.policy``: the access policy file."""

    path: str = ""


@dataclass(frozen=True)
class AuthConfig:
    """``auth``: at most one of htpasswd and token; policy applies to either."""

    htpasswd: HtpasswdAuth | None = None
    token: TokenAuth | None = None
    policy: PolicyRef | None = None

    def validate(self) -> None:
        if self.htpasswd and self.token:
            raise ValueError("configure only one of htpasswd and token")

    @property
    def enabled(self) -> bool:
        return bool(self.htpasswd or self.token)
