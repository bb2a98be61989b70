"""Berth's token service: ``/auth/token`` (Docker's GET flow and the OAuth2 POST form) and ``/auth/jwks``.

``GET /auth/token?service=&scope=&scope=&offline_token=&client_id=&account=``
authenticates Basic credentials (or none: anonymous) and answers
``{token, access_token, expires_in, issued_at[, refresh_token]}``.
``POST /auth/token`` takes ``grant_type=password`` (``username``, ``password``)
or ``grant_type=refresh_token`` (``refresh_token``), plus ``service``,
``client_id``, ``scope`` (space-separated) and ``access_type=offline`` to get a
refresh token. Either way the token grants the intersection of the requested
scopes and what the policy allows; unknown or malformed scopes are left out,
never an error. Refresh tokens stop working when the user's htpasswd entry
changes or disappears. Errors use the registry's error format.

An access token (:mod:`auth.pat`) works as the password: the JWT then grants the requested
scopes ∩ the owner's policy ∩ the token's scopes, names the owner as subject, carries the
token id (so the registry refuses it once the access token is revoked), and never comes
with a refresh token (the access token itself is the long-lived credential).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from auth.access import Access, parse_scopes
from auth.challenge import BasicCredentials, BearerToken, MalformedAuthorization, basic_challenge
from auth.config import TokenAuth
from auth.middleware import CONTROLLER, JWKS_PATH, PAT_CLAIM, TOKEN_PATH, AuthController, credentials
from auth.pat import TokenRecord
from auth.tokens import TokenError, issue_refresh_token, issue_token, rfc3339
from registry.appkeys import REQUEST_USER
from registry.errors import ErrorCode, RegistryError

log = logging.getLogger("berth.auth")

MAX_FORM_SIZE = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _bad_request(message: str) -> RegistryError:
    return RegistryError(ErrorCode.UNAUTHORIZED, message, status=400)


def _settings(controller: AuthController) -> TokenAuth:
    token = controller.config.token
    assert token is not None and token.builtin
    return token


def _check_service(token: TokenAuth, service: str | None) -> None:
    if service and service != token.service_name:
        raise _bad_request(f"this token service issues tokens for service {token.service_name!r} only")


def _narrow(controller: AuthController, policy: Any, record: TokenRecord, granted: list[Access]) -> list[Access]:
    """Repository grants cut down to what the access token allows (other resources: as the owner)."""
    out: list[Access] = []
    for access in granted:
        if access.type == "repository":
            allowed = controller.token_actions(policy, record, access.name)
            access = Access.of(access.type, access.name, [a for a in access.actions if a in allowed])
        if access.actions:
            out.append(access)
    return out


async def _issue(request: web.Request, controller: AuthController, user: str | None, scopes: list[Access], *,
                 offline: bool, client_id: str, oauth: bool, record: TokenRecord | None = None) -> dict[str, Any]:
    if user is not None:
        request[REQUEST_USER] = user  # for the access log
        controller.login_event(request, user if record is None else f"{user} (token {record.id})", "success")
    token = _settings(controller)
    assert controller.signing_key is not None
    policy = await controller.policy()
    granted = policy.grant(user, scopes)  # "*" is expanded to what the policy allows
    if record is not None:
        granted = _narrow(controller, policy, record, granted)
        offline = False
    now = time.time()
    lifetime = int(token.expiration)
    access_token = issue_token(controller.signing_key, issuer=token.issuer_name, audience=token.service_name,
                               subject=user or "", access=granted, lifetime=lifetime, now=now,
                               extra={PAT_CLAIM: record.id} if record is not None else None)
    body: dict[str, Any] = {"access_token": access_token, "token": access_token, "expires_in": lifetime,
                            "issued_at": rfc3339(now)}
    if oauth:
        body["scope"] = " ".join(a.scope for a in granted)
    if offline and user is not None and controller.htpasswd is not None:
        users = await controller.htpasswd.users()
        body["refresh_token"] = issue_refresh_token(
            controller.signing_key, issuer=token.issuer_name, service=token.service_name, subject=user,
            client_id=client_id, fingerprint=users.fingerprint(user), lifetime=token.refreshexpiration, now=now)
    log.info("issued token to %s (client %r) for %s", user or "anonymous", client_id[:64],
             " ".join(a.scope for a in granted) or "no scopes")
    return body


async def get_token(request: web.Request) -> web.StreamResponse:
    """Docker's token request: Basic credentials or none, scopes in the query string."""
    controller = request.app[CONTROLLER]
    token = _settings(controller)
    query = request.query
    _check_service(token, query.get("service"))
    try:
        creds = credentials(request)
    except MalformedAuthorization as exc:
        raise _bad_request(str(exc)) from None
    user: str | None = None
    record: TokenRecord | None = None
    if isinstance(creds, BearerToken):
        raise _bad_request("authenticate to the token service with Basic credentials")
    if isinstance(creds, BasicCredentials):
        user, record = await controller.check_credentials(request, creds.username, creds.password)
    account = query.get("account")
    login = creds.username if isinstance(creds, BasicCredentials) else ""
    if account and user is not None and account != user and (record is None or account != login):
        raise _bad_request("account does not match the credentials")
    body = await _issue(request, controller, user, parse_scopes(query.getall("scope", [])),
                        offline=query.get("offline_token", "").lower() == "true",
                        client_id=query.get("client_id", ""), oauth=False, record=record)
    return web.json_response(body, headers=NO_STORE)


async def post_token(request: web.Request) -> web.StreamResponse:
    """The OAuth2 form: ``grant_type=password`` or ``grant_type=refresh_token``."""
    controller = request.app[CONTROLLER]
    token = _settings(controller)
    if request.content_length is not None and request.content_length > MAX_FORM_SIZE:
        raise _bad_request("request body too large")
    form = await request.post()

    def field(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    _check_service(token, field("service"))
    client_id = field("client_id")
    grant_type = field("grant_type")
    scopes = parse_scopes([v for v in form.getall("scope", []) if isinstance(v, str)])
    offline = field("access_type") == "offline"
    record: TokenRecord | None = None
    if grant_type == "password":
        username = field("username")
        if not username:
            raise _bad_request("username is required")
        user, record = await controller.check_credentials(request, username, field("password"))
    elif grant_type == "refresh_token":
        user = await _refresh_user(controller, request, field("refresh_token"))
    else:
        raise _bad_request("grant_type must be password or refresh_token")
    body = await _issue(request, controller, user, scopes, offline=offline, client_id=client_id, oauth=True,
                        record=record)
    return web.json_response(body, headers=NO_STORE)


async def _refresh_user(controller: AuthController, request: web.Request, refresh_token: str) -> str:
    controller.check_rate(request)
    assert controller.refresh_verifier is not None
    reason = ""
    user = ""
    try:
        claims = controller.refresh_verifier.verify(refresh_token)
        user = claims.subject
        users = await controller.htpasswd.users() if controller.htpasswd is not None else None
        if not user or users is None or not users.hashes.get(user):
            reason = "unknown user"
        elif claims.extra.get("pwd") != users.fingerprint(user):
            reason = "the password changed since the token was issued"
    except TokenError as exc:
        reason = str(exc)
    if reason:
        controller.limiter.failed(controller.client_key(request))
        log.warning("rejected refresh token from %s: %s", controller.client_key(request), reason)
        raise RegistryError(ErrorCode.UNAUTHORIZED, "invalid refresh token",
                            headers={"WWW-Authenticate": basic_challenge(controller.realm(request))})
    return user


async def jwks(request: web.Request) -> web.StreamResponse:
    """The public key tokens are signed with, as a JWKS (for registries that should trust Berth's tokens)."""
    controller = request.app[CONTROLLER]
    assert controller.signing_key is not None
    return web.json_response({"keys": [controller.signing_key.jwk()]})


def add_routes(app: web.Application, controller: AuthController) -> None:
    """Mount the token service on ``app`` (``app[CONTROLLER]`` must be ``controller``)."""
    assert app[CONTROLLER] is controller
    app.router.add_get(TOKEN_PATH, get_token)
    app.router.add_post(TOKEN_PATH, post_token)
    app.router.add_get(JWKS_PATH, jwks)
