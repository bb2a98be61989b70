"""Benchmark: push throughput of a Berth process with no endpoint, a fast, a slow and a dead endpoint.

Run: ``python -m tests.webhooks.bench_push [--images 150] [--concurrency 8] [--rounds 3]``.
Each image is two small blobs and a tagged manifest (so three events), pushed
with ``--concurrency`` clients. The endpoint receivers run in their own
process so they do not share the client's CPU. Configurations run in rotation,
and the median of the rounds is reported with its ratio to "none".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers import Server, filesystem_config, free_port, start_berth

ENDPOINT_KINDS: dict[str, float | None] = {
    "none": None,
    "fast": 0.0,
    "slow": 2.0,  # 2 s per delivery
    "dead": -1.0,  # answers 503
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_image(session: aiohttp.ClientSession, base: str, n: int, salt: str, layer_size: int) -> None:
    layer = os.urandom(layer_size)
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": n, "salt": salt}).encode()
    for data in (layer, config):
        async with session.post(f"{base}/v2/bench/app/blobs/uploads/", params={"digest": sha256(data)},
                                data=data) as resp:
            assert resp.status == 201, await resp.text()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    async with session.put(f"{base}/v2/bench/app/manifests/t{n}", data=manifest,
                           headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}) as resp:
        assert resp.status == 201, await resp.text()


async def push_all(base: str, images: int, concurrency: int, salt: str, layer_size: int) -> float:
    """Images pushed per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(images):
        queue.put_nowait(n)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await push_image(session, base, queue.get_nowait(), salt, layer_size)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return images / (time.perf_counter() - started)


def start_receiver(delay: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    code = ("import asyncio,sys\nfrom aiohttp import web\n"
            f"D={delay}\n"
            "async def h(r):\n"
            "    await r.read()\n"
            "    if D < 0: return web.Response(status=503)\n"
            "    await asyncio.sleep(D)\n"
            "    return web.Response()\n"
            "app=web.Application(); app.router.add_post('/{t:.*}', h)\n"
            f"web.run_app(app, host='127.0.0.1', port={port}, print=None, access_log=None)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/hook"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(kind: str, delay: float | None, root: Path, args: argparse.Namespace,
              rnd: int) -> tuple[float, float]:
    """(images per second, server CPU milliseconds per image)."""
    extra: dict[str, Any] = {}
    receiver = None
    if delay is not None:
        receiver, url = start_receiver(delay)
        extra["notifications"] = {"endpoints": [{"name": "bench", "url": url, "timeout": "5s"}],
                                  "outbox": str(root / f"outbox-{kind}-{rnd}")}
    config = filesystem_config(root / f"data-{kind}-{rnd}".replace(" ", "_"), **extra)
    server: Server = start_berth(config, root / f"berth-{kind}-{rnd}".replace(" ", "_"))
    try:
        asyncio.run(push_all(server.url, 10, args.concurrency, "warmup", args.layer_size))
        cpu = cpu_seconds(server.pid)
        rate = asyncio.run(push_all(server.url, args.images, args.concurrency, f"r{rnd}", args.layer_size))
        return rate, (cpu_seconds(server.pid) - cpu) * 1000 / args.images
    finally:
        server.kill()  # a slow endpoint would otherwise hold shutdown for the drain timeout
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layer-size", type=int, default=4096, help="bytes of the layer blob")
    parser.add_argument("--kinds", default=",".join(ENDPOINT_KINDS), help="comma-separated subset of: "
                        + ", ".join(ENDPOINT_KINDS))
    args = parser.parse_args()
    kinds = {k: ENDPOINT_KINDS[k] for k in args.kinds.split(",")}
    kinds.setdefault("none", None)
    results: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        for rnd in range(args.rounds):
            for kind, delay in kinds.items():
                rate, ms = run_round(kind, delay, Path(tmp), args, rnd)
                results[kind].append(rate)
                cpu[kind].append(ms)
    base = statistics.median(results["none"])
    base_cpu = statistics.median(cpu["none"])
    print(f"{args.images} images (a {args.layer_size}-byte layer, a config, a tagged manifest: 3 events each), "
          f"concurrency {args.concurrency}, median of {args.rounds} rounds")
    for kind, values in results.items():
        med = statistics.median(values)
        ms = statistics.median(cpu[kind])
        print(f"  {kind:24s} {med:7.1f} images/s {med / base:5.2f}x of none | server CPU {ms:5.2f} ms/image "
              f"{base_cpu / ms:5.2f}x of none | rounds: {', '.join(f'{v:.1f}' for v in values)} images/s, "
              f"{', '.join(f'{v:.1f}' for v in cpu[kind])} ms/image")


if __name__ == "__main__":
    main()
