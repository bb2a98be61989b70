"""The access-token HTTP API: ``/admin/tokens`` (admins, every token) and ``/api/tokens`` (your own).

``GET`` lists (never a secret), ``POST`` with a JSON body ``{"name", "scopes": [...],
"expires": "90d"}`` creates and answers ``201 {"token": {...}, "secret": "berth_pat_..."}``
(the only time the secret is shown), ``DELETE .../{id}`` revokes. Admins may also set
``"owner"`` (a user) or ``"robot"`` (a robot's name) on ``POST /admin/tokens``.

Every route needs credentials (the auth middleware: a password, a token service JWT, or an
access token with the ``admin`` scope). CSRF: Berth sets no cookies, so a browser never
sends credentials on its own; in addition ``POST`` must be ``Content-Type: application/json``,
which a cross-site form cannot send without a CORS preflight that Berth never approves.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from auth.middleware import CONTROLLER, IDENTITY, Identity
from auth.pat import (
    TokenInputError,
    TokenRecord,
    TokenStore,
    parse_expiry,
    robot_account,
)
from registry.errors import ErrorCode, RegistryError

ADMIN_TOKENS = "/admin/tokens"
API_TOKENS = "/api/tokens"
MAX_BODY = 64 * 1024


def _store(request: web.Request) -> TokenStore:
    store = request.app[CONTROLLER].tokens
    if store is None:
        raise RegistryError(ErrorCode.UNSUPPORTED, "access tokens are not available")
    return store


def _caller(request: web.Request) -> Identity:
    identity: Identity | None = request.get(IDENTITY)
    if identity is None or identity.user is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "log in to manage access tokens")
    return identity


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise RegistryError(ErrorCode.UNSUPPORTED, "send the request as Content-Type: application/json", status=415)
    if request.content_length is None or request.content_length > MAX_BODY:
        raise RegistryError(ErrorCode.SIZE_TOO_LARGE, "body missing or too large", {"limit": MAX_BODY}, status=413)
    try:
        doc = json.loads(await request.read())
    except ValueError:
        raise RegistryError(ErrorCode.UNSUPPORTED, "body is not JSON", status=400) from None
    if not isinstance(doc, dict):
        raise RegistryError(ErrorCode.UNSUPPORTED, "body must be a JSON object", status=400)
    return doc


def _audit(request: web.Request, action: str, record: TokenRecord) -> None:
    from registry.governance import AUDIT

    audit = request.app.get(AUDIT)
    if audit is not None:
        audit.record(action, actor=_caller(request).actor, address=request.remote or "",
                     reference=record.id, detail={"name": record.name, "owner": record.owner,
                                                  "scopes": record.to_json()["scopes"]})


async def _revoke(request: web.Request, owner: str | None) -> web.Response:
    store = _store(request)
    token_id = request.match_info["id"]
    record = await store.get(token_id)
    if record is None or (owner is not None and record.owner != owner):
        raise RegistryError(ErrorCode.NAME_UNKNOWN, "no such token", {"id": token_id[:32]}, status=404)
    record = await store.revoke(token_id, by=_caller(request).actor)
    _audit(request, "token.revoke", record)
    return web.json_response({"token": record.to_json()})


async def admin_list(request: web.Request) -> web.Response:
    """``GET /admin/tokens``: every token."""
    from registry.observability import require_admin

    await require_admin(request)
    return web.json_response({"tokens": [r.to_json() for r in await _store(request).list()]})


async def admin_create(request: web.Request) -> web.Response:
    """``POST /admin/tokens``: a token for any user (``owner``) or robot (``robot``)."""
    from registry.observability import require_admin

    await require_admin(request)
    body = await _body(request)
    try:
        owner = robot_account(str(body["robot"])) if body.get("robot") else str(body.get("owner")
                                                                                 or _caller(request).user)
    except TokenInputError as exc:
        raise RegistryError(ErrorCode.UNSUPPORTED, str(exc), status=400) from None
    return await _create_with(request, owner, body)


async def _create_with(request: web.Request, owner: str, body: dict[str, Any]) -> web.Response:
    scopes = body.get("scopes", [])
    if isinstance(scopes, str):
        scopes = [scopes]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise RegistryError(ErrorCode.UNSUPPORTED, "scopes must be a list of strings", status=400)
    try:
        record, secret = await _store(request).create(
            owner=owner, name=str(body.get("name", "")), scopes=scopes,
            expires_in=parse_expiry(body.get("expires")), created_by=_caller(request).actor)
    except TokenInputError as exc:
        raise RegistryError(ErrorCode.UNSUPPORTED, str(exc), status=400) from None
    _audit(request, "token.create", record)
    return web.json_response({"token": record.to_json(), "secret": secret}, status=201,
                             headers={"Cache-Control": "no-store"})


async def admin_revoke(request: web.Request) -> web.Response:
    """``DELETE /admin/tokens/{id}``: revoke any token."""
    from registry.observability import require_admin

    await require_admin(request)
    return await _revoke(request, None)


async def api_list(request: web.Request) -> web.Response:
    """``GET /api/tokens``: the caller's tokens."""
    user = _caller(request).user
    return web.json_response({"tokens": [r.to_json() for r in await _store(request).list(owner=user)]})


async def api_create(request: web.Request) -> web.Response:
    """``POST /api/tokens``: a token for the caller."""
    user = _caller(request).user
    assert user is not None
    return await _create_with(request, user, await _body(request))


async def api_revoke(request: web.Request) -> web.Response:
    """``DELETE /api/tokens/{id}``: revoke one of the caller's tokens."""
    return await _revoke(request, _caller(request).user)


def add_routes(app: web.Application) -> None:
    """Mount both APIs."""
    app.router.add_get(ADMIN_TOKENS, admin_list)
    app.router.add_post(ADMIN_TOKENS, admin_create)
    app.router.add_delete(ADMIN_TOKENS + "/{id}", admin_revoke)
    app.router.add_get(API_TOKENS, api_list)
    app.router.add_post(API_TOKENS, api_create)
    app.router.add_delete(API_TOKENS + "/{id}", api_revoke)
