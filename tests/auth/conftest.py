"""Helpers for the auth suite: htpasswd files, keys and certificates, small apps."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from aiohttp import web

FAST_COST = 4


def write_htpasswd(path: Path, users: dict[str, str], *, prefix: bytes = b"$2b$", cost: int = FAST_COST) -> Path:
    """An htpasswd file with bcrypt entries (``$2y$`` like Apache's tool when ``prefix`` says so)."""
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(cost))  # Apache truncates too
        lines.append(user.encode() + b":" + prefix + hashed[4:])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header with Basic credentials."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    """An Authorization header with a bearer token."""
    return {"Authorization": "Bearer " + token}


def make_cert(subject: str, key: Any, *, issuer: tuple[x509.Certificate, Any] | None = None, ca: bool = False,
              days: int = 30, not_before: dt.datetime | None = None, basic_constraints: bool = True
              ) -> x509.Certificate:
    """A certificate for ``key``, self-signed or signed by ``issuer`` (cert, private key)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(start + dt.timedelta(days=days)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


def cert_pem(*certs: x509.Certificate) -> bytes:
    """PEM bundle of ``certs``."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def x5c(*certs: x509.Certificate) -> list[str]:
    """An ``x5c`` header value."""
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]


def ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- a small app: the real error middleware and auth, stub handlers ---------------------------

REPOS = ["public/a", "team/x", "team/y/z", "releases/v", "secret"]
EXISTING_TAGS = {("team/x", "v1"), ("releases/v", "1.0"), ("secret", "old")}


def small_app(config_text: str) -> "web.Application":
    """The registry's error middleware and ``auth.setup`` around handlers that echo what auth decided.

    Catalog requests list :data:`REPOS` filtered by ``REPO_VISIBLE``; a manifest PUT on a tag in
    :data:`EXISTING_TAGS` calls ``TAG_OVERWRITE_CHECK`` like the real handler.
    """
    from aiohttp import web

    import auth
    from registry.appkeys import REPO_VISIBLE, REQUEST_USER, TAG_OVERWRITE_CHECK
    from registry.config import parse_config
    from registry.middlewares import error_middleware
    from registry.routes import Kind, match

    config = parse_config("version: 0.1\nstorage: {inmemory: {}}\n" + config_text, environ={})

    async def v2(request: web.Request) -> web.StreamResponse:
        route = match(request.path)
        if route is not None and route.kind == Kind.CATALOG:
            visible = request.app.get(REPO_VISIBLE)
            repos = [r for r in REPOS if visible is None or await visible(request, r)]
            return web.json_response({"repositories": repos})
        if route is not None and route.kind == Kind.MANIFEST and request.method == "PUT":
            check = request.app.get(TAG_OVERWRITE_CHECK)
            if check is not None and (route.name, route.reference) in EXISTING_TAGS:
                await check(request, route.name, route.reference)
            return web.json_response({"user": request.get(REQUEST_USER)}, status=201)
        return web.json_response({"user": request.get(REQUEST_USER), "path": request.path})

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_route("*", "/v2", v2)
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    app.router.add_route("*", "/elsewhere", v2)
    app.router.add_get("/healthz", health)
    auth.setup(app, config)
    return app


async def raw_request(client: Any, method: str, path: str,
                      headers: dict[str, str] | list[tuple[str, str]] | None = None
                      ) -> tuple[int, dict[str, str], bytes]:
    """Send ``path`` and ``headers`` byte for byte (no normalisation, repeats kept) and read the response."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{client.port}", "Connection: close"]
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines += [f"{k}: {v}" for k, v in pairs]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), parsed, body


# The policy and users the middleware and token-service tests share.
POLICY = """
groups: {devs: [alice]}
rules:
  - repository: "public/**"
    anonymous: [pull]
  - repository: "team/**"
    groups: {devs: ["*"]}
    users: {bob: [pull]}
  - repository: "releases/**"
    groups: {devs: ["*"]}
    immutable: true
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    (tmp_path / "policy.yml").write_text(POLICY)
    return tmp_path
