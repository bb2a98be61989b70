"""S3 calls per registry operation: Berth and the reference registry side by side on SeaweedFS.

Usage::

    python bench/s3_calls.py                      # both registries, 50 repositories for the catalog
    python bench/s3_calls.py --servers berth --repos 200 --no-write

Each registry's ``storage.s3.regionendpoint`` points at a counting reverse proxy in front of one
SeaweedFS, so both are counted the same way, whatever S3 SDK they use. The proxy names each
request by its S3 operation (from method, query and headers) and forwards it unchanged (the
``Host`` header included, so signatures and presigned URLs stay valid). For every operation of a
fixed scenario (a 4 KiB blob push, manifest PUT/GET/HEAD, tags list, blob HEAD/GET with redirect
on and off, the catalog, 64 MiB pushes), the script prints how many S3 calls the registry made
until it answered, by operation, and the wall time through the proxy (only indicative: the proxy
adds latency). Presigned GETs that the client follows after a 307 are counted too, marked
``(presigned)``. ``HeadBucket`` from a registry's periodic storage health check can land in any row.

Writes a markdown table to ``bench/results/s3-calls-<stamp>.md`` unless ``--no-write``.

Guarantees: every server (SeaweedFS, the proxy, the registries) binds 127.0.0.1 on a free port;
registries and SeaweedFS are stopped by their pid; the proxy thread ends with the script (it is a
daemon thread and its loop is stopped); every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.server_bench import (
    BENCH_LOG,
    NO_REDIRECT,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    RESULTS_DIR,
    Content,
    MiB,
    Registry,
    SmallContent,
)
from tests.servers import Server, deep_merge, s3_config, start_registry

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect", "proxy-connection"}
SETTLE = 0.3  # seconds of quiet before and after each measured operation
OPERATION_TIMEOUT = 300.0


def s3_operation(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The S3 API operation a path-style request stands for (``HEAD /bucket/key`` -> HeadObject)."""
    keys = set(query)
    object_path = len([s for s in path.split("/") if s]) > 1
    copy = any(k.lower() == "x-amz-copy-source" for k in headers)
    if method == "GET":
        if "list-type" in keys:
            return "ListObjectsV2"
        if "uploads" in keys:
            return "ListMultipartUploads"
        if "uploadId" in keys:
            return "ListParts"
        if not object_path:
            return "ListObjects"
        suffix = " (presigned)" if "X-Amz-Signature" in keys else ""
        return "GetObject" + (" (range)" if any(k.lower() == "range" for k in headers) else "") + suffix
    if method == "HEAD":
        return "HeadObject" if object_path else "HeadBucket"
    if method == "PUT":
        if "partNumber" in keys:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in keys:
            return "CreateMultipartUpload"
        if "uploadId" in keys:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in keys else "POST"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in keys else "DeleteObject"
    return method


class CountingProxy:
    """A reverse proxy to ``upstream`` on 127.0.0.1 that counts requests by S3 operation.

    Runs its own event loop in a daemon thread; :meth:`snapshot` is safe from any thread.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = 0
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="s3-counting-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> CountingProxy:
        """Start serving; raise if the proxy is not listening within ``timeout`` seconds."""
        self._thread.start()
        if not self._ready.wait(timeout) or not self.port:
            raise RuntimeError("the counting proxy did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the proxy's loop and wait (bounded) for its thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def snapshot(self) -> collections.Counter[str]:
        """A copy of the counts so far."""
        with self._lock:
            return collections.Counter(self._counts)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app = web.Application(client_max_size=0)
            app.router.add_route("*", "/{tail:.*}", lambda request: self._forward(session, request))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server  # aiohttp exposes the bound port only here
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1]) if sockets else 0
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.StreamResponse:
        operation = s3_operation(request.method, request.path, request.query, request.headers)
        with self._lock:
            self._counts[operation] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = request.content if request.body_exists else None
        async with session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers={"Content-Type", "User-Agent", "Accept", "Accept-Encoding"},
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    response.headers.add(key, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(MiB):
                    await response.write(chunk)
            await response.write_eof()
            return response


Row = dict[str, Any]


async def count(proxy: CountingProxy, rows: dict[str, Row], label: str, action: Callable[[], Awaitable[Any]]) -> None:
    """Run ``action`` and record the S3 calls made meanwhile (after a quiet moment each side)."""
    await asyncio.sleep(SETTLE)
    before = proxy.snapshot()
    started = time.perf_counter()
    await asyncio.wait_for(action(), OPERATION_TIMEOUT)
    took = time.perf_counter() - started
    await asyncio.sleep(SETTLE)
    calls = proxy.snapshot() - before
    rows[label] = {"total": sum(calls.values()), "calls": dict(sorted(calls.items())), "ms": took * 1000}


def config_only_manifest(config: SmallContent, layers: list[SmallContent]) -> bytes:
    """An OCI image manifest for ``config`` and ``layers``."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": OCI_LAYER, "digest": b.digest, "size": b.size} for b in layers],
        }
    ).encode()


async def scenario(proxy: CountingProxy, url: str, direct_url: str, repos: int) -> dict[str, Row]:
    """The fixed sequence of operations against one registry (``direct_url``: redirects disabled)."""
    rows: dict[str, Row] = {}
    timeout = aiohttp.ClientTimeout(total=OPERATION_TIMEOUT, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        reg = Registry(session, url)
        direct = Registry(session, direct_url)
        layer = SmallContent(1, 1, 4096)
        config = SmallContent(1, 2, 256)
        manifest = config_only_manifest(config, [layer])

        async def status(method: str, path: str, expected: tuple[int, ...]) -> None:
            async with session.request(method, url + path, headers={"Accept": OCI_MANIFEST}, allow_redirects=False) as resp:
                await resp.read()
                if resp.status not in expected:
                    raise RuntimeError(f"{method} {path}: {resp.status}")

        await count(proxy, rows, "4 KiB blob push, new blob (POST + PUT)", lambda: reg.push_monolithic("a/one", layer))
        await count(proxy, rows, "4 KiB blob push, blob exists elsewhere (POST + PUT)",
                    lambda: reg.push_monolithic("a/two", layer))
        await reg.push_monolithic("a/one", config)
        await count(proxy, rows, "manifest PUT by tag (config + 1 layer)", lambda: reg.put_manifest("a/one", "v1", manifest))
        await count(proxy, rows, "manifest GET by tag", lambda: reg.get_manifest("a/one", "v1"))
        await count(proxy, rows, "manifest HEAD by tag", lambda: status("HEAD", "/v2/a/one/manifests/v1", (200,)))
        await count(proxy, rows, "GET tags/list", lambda: reg.get_json("/v2/a/one/tags/list"))
        await count(proxy, rows, "blob HEAD (200 or 307, not followed)",
                    lambda: status("HEAD", f"/v2/a/one/blobs/{layer.digest}", (200, 307)))
        await count(proxy, rows, "4 KiB blob GET, redirect on (307 followed)", lambda: reg.pull("a/one", layer.digest))
        await count(proxy, rows, "4 KiB blob GET, redirect off", lambda: direct.pull("a/one", layer.digest))

        small_manifest = config_only_manifest(config, [])

        async def make_repo(i: int) -> None:
            await reg.push_monolithic(f"many/repo-{i:04d}", config)
            await reg.put_manifest(f"many/repo-{i:04d}", "v1", small_manifest)

        await count(proxy, rows, "repo creation: config blob push + manifest PUT", lambda: make_repo(0))
        for i in range(1, repos):
            await make_repo(i)
        await count(proxy, rows, f"GET /v2/_catalog?n=1000, {repos + 2} repos", lambda: reg.get_json("/v2/_catalog?n=1000"))

        big = Content(3, 64 * MiB)
        chunked = Content(4, 64 * MiB)
        _ = big.digest, chunked.digest
        await count(proxy, rows, "64 MiB blob push, monolithic (POST + PUT)", lambda: reg.push_monolithic("a/big", big))
        await count(proxy, rows, "64 MiB blob push, 4 x 16 MiB PATCH + PUT",
                    lambda: reg.push_chunked("a/big", chunked, 16 * MiB))
        await count(proxy, rows, "64 MiB blob GET, redirect off", lambda: direct.pull("a/big", big.digest))
    return rows


def markdown(results: dict[str, dict[str, Row]], repos: int) -> str:
    """One row per operation, one column per registry: total calls, breakdown, time."""
    names = list(results)
    header = ["operation", *names]
    lines = [
        f"S3 calls per registry operation (through a counting proxy to SeaweedFS), {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    labels: list[str] = []
    for rows in results.values():
        labels += [label for label in rows if label not in labels]
    for label in labels:
        cells = [label]
        for name in names:
            row = results[name].get(label)
            if row is None:
                cells.append("—")
                continue
            detail = ", ".join(f"{op} {n}" for op, n in row["calls"].items())
            cells.append(f"**{row['total']}** ({detail}; {row['ms']:.0f} ms)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (f"The catalog row has {repos} repositories made by this script plus a/one and a/two. "
         "Times include the proxy's own latency and are only indicative. HeadBucket comes from a registry's "
         "periodic storage health check, whichever request it happens to fall into."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the scenario against each registry; print (and write) the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="reference,berth", help="comma list of reference, berth")
    parser.add_argument("--repos", type=int, default=50, help="repositories for the catalog row (default 50)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from tests.s3server import seaweedfs

    workdir = Path(tempfile.mkdtemp(prefix="berth-s3calls-"))
    results: dict[str, dict[str, Row]] = {}
    try:
        with seaweedfs(root=workdir / "seaweedfs") as s3:
            proxy = CountingProxy(s3.endpoint).start()
            try:
                for kind in [k.strip() for k in args.servers.split(",") if k.strip()]:
                    config = s3_config(s3, f"s3calls-{kind}-{int(time.time())}", **BENCH_LOG)
                    config["storage"]["s3"]["regionendpoint"] = proxy.url
                    servers: list[Server] = []
                    try:
                        servers.append(start_registry(kind, config, workdir / kind / "redirect"))
                        servers.append(start_registry(kind, deep_merge(config, NO_REDIRECT), workdir / kind / "direct"))
                        print(f"== {kind}", flush=True)
                        results[kind] = asyncio.run(scenario(proxy, servers[0].url, servers[1].url, args.repos))
                    finally:
                        for server in servers:
                            server.stop()
            finally:
                proxy.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(results, args.repos)
    print(text)
    if not args.no_write:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"s3-calls-{time.strftime('%Y%m%d-%H%M%S')}.md"
        path.write_text(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
