"""Fixtures for the governance suite: the real app (filesystem storage, htpasswd or token auth, a
policy) driven in-process, and helpers that push tiny images with credentials."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from registry.app import create_app
from registry.config import parse_config
from tests.auth.conftest import basic, write_htpasswd

POLICY = """
groups: {devs: [alice]}
admins: [root]
rules:
  - repository: "team/**"
    groups: {devs: ["*"]}
    users: {bob: [pull], "robot$ci": [pull, push]}
  - repository: "public/**"
    authenticated: [pull]
"""
PASSWORDS = {"alice": "wonderland", "bob": "builder", "root": "rootpw"}


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def gov_files(tmp_path: Path) -> Path:
    """htpasswd (alice, bob, root) and the policy above."""
    write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    (tmp_path / "policy.yml").write_text(POLICY)
    return tmp_path


def gov_config_text(files: Path, mode: str = "htpasswd", extra: str = "", root: Path | None = None) -> str:
    """A config: filesystem storage under ``root`` (default ``files/data``), deletes on, auth ``mode``."""
    root = root or files / "data"
    if mode == "htpasswd":
        auth = f"  htpasswd: {{path: {files / 'htpasswd'}}}\n"
    else:
        auth = f"  token: {{signingkey: {files / 'key.pem'}, htpasswd: {files / 'htpasswd'}}}\n"
    return (f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {root}}}\n  delete: {{enabled: true}}\n"
            f"auth:\n{auth}  policy: {{path: {files / 'policy.yml'}}}\n  loginlimit: {{failures: 0}}\n" + extra)


@pytest.fixture
def gov_app(gov_files: Path, aiohttp_client: Callable[..., Any]) -> Callable[..., Any]:
    """``await gov_app(mode="htpasswd", extra="")`` → a TestClient on a real app."""
    async def make(mode: str = "htpasswd", extra: str = "", root: Path | None = None) -> TestClient:
        config = parse_config(gov_config_text(gov_files, mode, extra, root), environ={})
        return await aiohttp_client(create_app(config))

    return make


async def push_blob(client: TestClient, name: str, data: bytes, headers: dict[str, str]) -> Any:
    """A monolithic blob upload; returns the response."""
    return await client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data, headers=headers)


def manifest_for(config: bytes, layers: list[bytes]) -> bytes:
    """An OCI image manifest naming ``config`` and ``layers``."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(b),
                    "size": len(b)} for b in layers],
    }).encode()


async def push_image(client: TestClient, name: str, tag: str, headers: dict[str, str],
                     layer: bytes | None = None) -> tuple[int, str]:
    """Push a one-layer image; (status of the manifest PUT, or of the first failing blob; digest)."""
    config = json.dumps({"os": "linux", "tag": tag}).encode()
    layer = layer if layer is not None else os.urandom(256)
    for blob in (config, layer):
        resp = await push_blob(client, name, blob, headers)
        if resp.status != 201:
            return resp.status, ""
    manifest = manifest_for(config, [layer])
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                            headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    return resp.status, resp.headers.get("Docker-Content-Digest", "")


async def make_token(client: TestClient, user: str, scopes: list[str], name: str = "t", **extra: Any) -> str:
    """Create a token for ``user`` (logged in with their password) through ``/api/tokens``; its secret."""
    resp = await client.post("/api/tokens", json={"name": name, "scopes": scopes, **extra},
                             headers=basic(user, PASSWORDS[user]))
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["secret"])


__all__ = [
    "PASSWORDS",
    "POLICY",
    "basic",
    "gov_config_text",
    "make_token",
    "manifest_for",
    "push_blob",
    "push_image",
    "sha256",
]
