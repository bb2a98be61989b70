"""The auth section of the config."""

from __future__ import annotations

import pytest

from registry.config import ConfigError, parse_config


def load(text: str):  # type: ignore[no-untyped-def]
    return parse_config("version: 0.1\n" + text, environ={}).auth


def test_default_is_no_auth() -> None:
    auth = load("")
    assert not auth.enabled and auth.htpasswd is None and auth.token is None


def test_htpasswd() -> None:
    auth = load("auth: {htpasswd: {realm: R, path: /x}}")
    assert auth.enabled and auth.htpasswd.realm == "R" and auth.htpasswd.path == "/x"


def test_builtin_token_service_defaults() -> None:
    token = load("auth: {token: {signingkey: /k.pem, htpasswd: /h}}").token
    assert token.builtin
    assert token.issuer_name == "berth-token-service" and token.service_name == "berth-registry"
    assert token.expiration == 300 and token.refreshexpiration == 30 * 86400
    assert "ES256" in token.algorithms and "HS256" not in token.algorithms


def test_external_issuer() -> None:
    token = load("auth: {token: {realm: https://a/t, service: s, issuer: i, rootcertbundle: /b.pem, "
                 "signingalgorithms: [RS256]}}").token
    assert not token.builtin and token.algorithms == ("RS256",)


def test_env_overrides() -> None:
    auth = parse_config("version: 0.1\n", environ={"REGISTRY_AUTH_HTPASSWD_PATH": "/etc/h",
                                                   "REGISTRY_AUTH_HTPASSWD_REALM": "env"}).auth
    assert auth.htpasswd.path == "/etc/h" and auth.htpasswd.realm == "env"


@pytest.mark.parametrize("text,key", [
    ("auth: {htpasswd: {path: /x}, token: {signingkey: /k}}", "only one"),
    ("auth: {htpasswd: {realm: R}}", "path"),
    ("auth: {token: {service: s, issuer: i}}", "rootcertbundle"),
    ("auth: {token: {rootcertbundle: /b, service: s, issuer: i}}", "realm"),
    ("auth: {token: {rootcertbundle: /b, realm: r, issuer: i}}", "service"),
    ("auth: {token: {rootcertbundle: /b, realm: r, service: s}}", "issuer"),
    ("auth: {token: {signingkey: /k, signingalgorithms: [HS256]}}", "HS256"),
    ("auth: {token: {signingkey: /k, signingalgorithms: [none]}}", "none"),
    ("auth: {token: {signingkey: /k, signingalgorithms: []}}", "empty"),
    ("auth: {token: {rootcertbundle: /b, realm: r, service: s, issuer: i, htpasswd: /h}}", "htpasswd"),
    ("auth: {token: {signingkey: /k, expiration: 0s}}", "positive"),
    ("auth: {policy: {path: /p}}", "policy"),
    ("auth: {htpasswd: {path: /x}, policy: {}}", "path"),
    ("auth: {htpasswd: {path: /x}, loginlimit: {failures: -1}}", "failures"),
    ("auth: {silly: {}}", "auth.silly"),
])
def test_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(text)
