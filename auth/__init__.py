"""Authentication and authorization for Berth: ``setup(app, config)`` wires it into an app.

Modes (``auth`` in the config): none (the default), ``htpasswd`` (Basic auth)
and ``token`` (bearer tokens from an external issuer, or from Berth's own token
service when ``auth.token.signingkey`` is set). ``auth.policy`` names the access
policy file used by every mode. See docs/auth.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from auth.access import Access, required_access
    from auth.middleware import CONTROLLER, IDENTITY, AuthController, Identity
    from registry.config import Config

__all__ = ["Access", "AuthController", "CONTROLLER", "IDENTITY", "Identity", "required_access", "setup"]

# The package is imported by the config loader (auth.config) and the client (auth.challenge):
# its heavy parts (JWT, crypto, the middleware) load only when used.
_LAZY = {
    "Access": "auth.access", "required_access": "auth.access",
    "AuthController": "auth.middleware", "CONTROLLER": "auth.middleware",
    "IDENTITY": "auth.middleware", "Identity": "auth.middleware",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auth' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def setup(app: web.Application, config: "Config") -> None:
    """Install auth on ``app`` (call after the error middleware is in place; no-op without ``auth``).

    Appends the auth middleware, sets ``app[REPO_VISIBLE]`` (catalog filtering),
    ``app[PULL_FILTER]`` (automatic mounts) and ``app[TAG_OVERWRITE_CHECK]`` (tag immutability),
    mounts ``/auth/token`` and ``/auth/jwks`` when the built-in token service is enabled, the
    access-token API (``/admin/tokens``, ``/api/tokens``), and loads every
    file the config names in ``cleanup_ctx`` (startup fails if one is unusable).
    """
    if not config.auth.enabled:
        return
    from auth import service
    from auth.middleware import CONTROLLER, AuthController, make_middleware
    from registry.appkeys import PULL_FILTER, REPO_VISIBLE, TAG_OVERWRITE_CHECK

    controller = AuthController(config)
    app[CONTROLLER] = controller
    app.middlewares.append(make_middleware(controller))
    app[REPO_VISIBLE] = controller.repo_visible
    app[TAG_OVERWRITE_CHECK] = controller.check_overwrite
    app[PULL_FILTER] = controller.pull_filter
    app.cleanup_ctx.append(controller.lifecycle)
    if config.auth.token is not None and config.auth.token.builtin:
        service.add_routes(app, controller)
    from auth import tokenapi

    tokenapi.add_routes(app)
