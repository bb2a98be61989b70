"""Berth as a process (``python -m registry serve``): SIGKILL loses no acknowledged event; SIGTERM flushes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.servers import Server, filesystem_config, start_berth
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def berth_config(root: Path, receiver: Receiver, **notifications: Any) -> dict[str, Any]:
    return filesystem_config(root / "data", notifications={
        "endpoints": [{"name": "ci", "url": receiver.url, "timeout": "2s", "backoff": "50ms",
                       "maxbackoff": "200ms", "threshold": 1}],
        "outbox": str(root / "outbox"),
        **notifications,
    })


async def push_blob(session: aiohttp.ClientSession, base: str, name: str, data: bytes) -> str:
    digest = sha256(data)
    async with session.post(f"{base}/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data) as resp:
        assert resp.status == 201, await resp.text()
    return digest


async def start(config: dict[str, Any], workdir: Path) -> Server:
    """Start Berth and check that its app factory wired the webhooks package."""
    server: Server = await asyncio.to_thread(start_berth, config, workdir)
    if "webhooks: outbox" not in server.log():
        await asyncio.to_thread(server.stop)
        pytest.fail("berth serve did not open the webhook outbox: registry.app must call registry.webhooks.setup")
    return server


def first_seen(ids_and_digests: list[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """Digests in order of first arrival, and the event id each digest was delivered with."""
    order: list[str] = []
    ids: dict[str, str] = {}
    for event_id, digest in ids_and_digests:
        if digest not in ids:
            order.append(digest)
            ids[digest] = event_id
        else:
            assert ids[digest] == event_id, "a redelivery must carry the same event id"
    return order, ids


async def test_sigkill_then_restart_delivers_every_acknowledged_event(tmp_path: Path) -> None:
    receiver = await Receiver(delay=0.03).start()
    server = await start(berth_config(tmp_path, receiver), tmp_path / "berth")
    try:
        async with aiohttp.ClientSession() as session:
            pushed = [await push_blob(session, server.url, "lib/app", f"blob {n}".encode()) for n in range(40)]
        await asyncio.to_thread(server.kill)  # every push above was acknowledged, so its event is durable
        before = len(receiver.accepted)
        assert before < len(pushed), "the endpoint was meant to lag behind the pushes"
        await asyncio.to_thread(server.start)
        await receiver.wait_for(len(pushed), timeout=30)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            order, ids = first_seen([(d.event["id"], d.event["target"]["digest"]) for d in receiver.accepted])
            if len(order) == len(pushed) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert order == pushed
        assert len(set(ids.values())) == len(pushed)
    finally:
        await asyncio.to_thread(server.stop)
        await receiver.stop()


async def test_sigterm_flushes_pending_deliveries_before_exit(tmp_path: Path) -> None:
    receiver = await Receiver(delay=0.05).start()
    config = berth_config(tmp_path, receiver, draintimeout="10s")
    server = await start(config, tmp_path / "berth")
    try:
        async with aiohttp.ClientSession() as session:
            pushed = [await push_blob(session, server.url, "lib/app", f"x{n}".encode()) for n in range(20)]
        code = await asyncio.to_thread(server.stop)
        assert code == 0, server.log()[-2000:]
        assert [d.event["target"]["digest"] for d in receiver.accepted] == pushed
    finally:
        await asyncio.to_thread(server.stop)
        await receiver.stop()
