"""Nothing auth does blocks the event loop: startup, password checks, token issue, reloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from blockbuster import blockbuster_ctx

from tests.auth.conftest import basic, bearer, small_app, write_htpasswd


async def test_token_mode_never_blocks(tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    write_htpasswd(tmp_path / "h", {"alice": "pw"})
    policy = tmp_path / "p.yml"
    policy.write_text("rules: [{repository: '**', authenticated: ['*']}]")
    app = small_app(f"auth:\n  token: {{signingkey: {tmp_path / 'k.pem'}, htpasswd: {tmp_path / 'h'}}}\n"
                    f"  policy: {{path: {policy}}}\n")
    with blockbuster_ctx():
        client = await aiohttp_client(app)  # creates the signing key, reads htpasswd and policy
        for round_ in range(2):
            resp = await client.get("/auth/token", params={"scope": "repository:a:pull", "offline_token": "true"},
                                    headers=basic("alice", "pw"))
            assert resp.status == 200
            body = await resp.json()
            assert (await client.get("/v2/a/tags/list", headers=bearer(body["token"]))).status == 200
            resp = await client.post("/auth/token", data={"grant_type": "refresh_token",
                                                          "refresh_token": body["refresh_token"]})
            assert resp.status == 200
            assert (await client.get("/auth/token", headers=basic("alice", "bad"))).status == 401
            if round_ == 0:
                await asyncio.to_thread(write_htpasswd, tmp_path / "h", {"alice": "pw", "bob": "x"})
                await asyncio.to_thread(policy.write_text, "rules: [{repository: '**', authenticated: [pull]}]")
                await asyncio.sleep(1.1)  # the files are re-read on the next check
            else:
                assert (await client.get("/auth/token", headers=basic("bob", "x"))).status == 200


async def test_basic_mode_never_blocks(tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    write_htpasswd(tmp_path / "h", {"alice": "pw"})
    with blockbuster_ctx():
        client = await aiohttp_client(small_app(f"auth:\n  htpasswd: {{path: {tmp_path / 'h'}}}\n"))
        for password, status in [("pw", 200), ("pw", 200), ("bad", 401)]:
            assert (await client.get("/v2/a/tags/list", headers=basic("alice", password))).status == status
