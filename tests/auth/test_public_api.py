"""The auth package's public surface (what the app factory and the client import)."""

from __future__ import annotations

import inspect

import auth
from auth import challenge


def test_exports() -> None:
    assert sorted(auth.__all__) == ["Access", "AuthController", "CONTROLLER", "IDENTITY", "Identity",
                                    "required_access", "setup"]
    assert list(inspect.signature(auth.setup).parameters) == ["app", "config"]


def test_client_side_helpers() -> None:
    for name in ("parse_www_authenticate", "find_challenge", "basic_authorization", "Challenge"):
        assert hasattr(challenge, name)


async def test_setup_is_a_no_op_without_auth() -> None:
    from aiohttp import web

    from registry.appkeys import REPO_VISIBLE, TAG_OVERWRITE_CHECK
    from registry.config import parse_config

    app = web.Application()
    auth.setup(app, parse_config("version: 0.1\n", environ={}))
    assert len(app.middlewares) == 0 and REPO_VISIBLE not in app and TAG_OVERWRITE_CHECK not in app
    assert len(app.router.routes()) == 0
