"""Registry server benchmark: Berth and the reference registry side by side, or any registry URL.

Usage::

    python bench/server_bench.py                  # start reference + Berth (filesystem), full sizes
    python bench/server_bench.py --quick          # smaller sizes, same figures
    python bench/server_bench.py --backend s3     # both on SeaweedFS
    python bench/server_bench.py --url mine=http://127.0.0.1:5000   # an already running registry

Figures, for each server: 1,000 repositories (one config blob + one tagged manifest each,
pushed by 16 concurrent clients; repos/s), then the latency (p50/p99, one client, at most 50
requests) of ``GET /v2/_catalog?n=1000`` and of ``GET /v2/<repo>/tags/list`` with those
repositories present; a big blob pushed monolithically and pulled (MB/s); on S3, the same pull
from a second server on the same storage with ``storage.redirect.disable: true`` (the first
answers blob GETs with 307 to a presigned URL, which the client follows); the same blob pushed in
16 MiB PATCH chunks and pulled in 16 MiB ranges; 2,000 x 4 KiB blobs pushed by 32 concurrent
clients (ops/s, p50/p99); manifest GET by tag from 64 concurrent clients for 10 s (req/s,
p50/p99); 16 clients pulling one 64 MiB blob at once (aggregate MB/s); and the servers' peak RSS
(VmHWM) when this script started them. Prints a markdown table with the Berth/reference ratio and
writes it (plus JSON) to ``bench/results/``.

Guarantees: request bodies are generated and streamed (nothing near the blob size is held in
memory, on either side of the socket, by this script); every loop is bounded in count and time;
servers started here bind 127.0.0.1 on free ports and are stopped by their pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import (
    Server,
    deep_merge,
    filesystem_config,
    s3_config,
    start_registry,
)

MiB = 1 << 20
BLOCK = MiB
RESULTS_DIR = ROOT / "bench" / "results"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PHASE_TIMEOUT = 900.0  # no single phase may run longer than this


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does."""

    big_blob: int
    chunk: int
    small_count: int
    small_size: int
    small_concurrency: int
    manifest_seconds: float
    manifest_concurrency: int
    fanout_clients: int
    fanout_blob: int
    repos: int
    repo_concurrency: int
    listing_requests: int
    listing_seconds: float


FULL = Sizes(1 << 30, 16 * MiB, 2000, 4096, 32, 10.0, 64, 16, 64 * MiB, 1000, 16, 50, 120.0)
QUICK = Sizes(64 * MiB, 16 * MiB, 200, 4096, 32, 2.0, 64, 16, 8 * MiB, 200, 16, 50, 60.0)
CATALOG_PAGE = 1000  # ?n= on every catalog GET (Distribution's default page is 100)


# Generated content ----------------------------------------------------------------------------


class Content:
    """``size`` deterministic bytes: 1 MiB blocks of one random base block, each stamped with
    (nonce, index) so no two blocks, and no two blobs of different nonces, are alike."""

    _base = os.urandom(BLOCK)

    def __init__(self, nonce: int, size: int) -> None:
        self.nonce = nonce
        self.size = size
        self._digest: str | None = None

    def block(self, index: int) -> bytes:
        """Block ``index`` (the last one may be short)."""
        start = index * BLOCK
        length = min(BLOCK, self.size - start)
        stamped = struct.pack(">QQ", self.nonce, index) + self._base[16:BLOCK]
        return stamped[:length]

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes in [start, end), block-aligned ``start``, as a stream of blocks."""
        end = self.size if end is None else end
        index = start // BLOCK
        while index * BLOCK < end:
            data = self.block(index)
            yield data[: max(0, end - index * BLOCK)]
            index += 1

    async def stream(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The same as :meth:`blocks`, as an async generator (an aiohttp request body)."""
        for data in self.blocks(start, end):
            yield data

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) in memory (only for chunks of a few MiB)."""
        return b"".join(self.blocks(start, end))

    @property
    def digest(self) -> str:
        """sha256 of all bytes (computed by streaming once, then cached)."""
        if self._digest is None:
            sha = hashlib.sha256()
            for data in self.blocks():
                sha.update(data)
            self._digest = "sha256:" + sha.hexdigest()
        return self._digest


class SmallContent(Content):
    """A small blob held in memory: ``size`` bytes unique per (nonce, index)."""

    def __init__(self, nonce: int, index: int, size: int) -> None:
        super().__init__(nonce, size)
        seed = struct.pack(">QQ", nonce, index)
        self.data = (seed * (size // len(seed) + 1))[:size]
        self._digest = "sha256:" + hashlib.sha256(self.data).hexdigest()


# Measurements ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured number: name, value, unit, and whether higher is better."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True


@dataclass
class ServerResult:
    """Everything measured on one server."""

    name: str
    url: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    direct: str | None = None  # URL of a second server on the same storage with redirects disabled

    def add(self, name: str, value: float, unit: str, higher_is_better: bool = True) -> None:
        """Record a figure."""
        self.figures.append(Figure(name, value, unit, higher_is_better))
        print(f"  {self.name:>10}  {name:<44} {value:12.2f} {unit}", flush=True)


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``samples`` by nearest rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of ``pid`` in MiB, or None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# Registry operations ------------------------------------------------------------------------


class Registry:
    """The handful of registry calls the benchmark makes, over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.redirected = 0  # blob GETs answered with a redirect that the client followed

    def _url(self, location: str) -> str:
        return urllib.parse.urljoin(self.base + "/", location)

    @staticmethod
    def _with_digest(url: str, digest: str) -> str:
        return url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})

    async def start_upload(self, repo: str) -> str:
        """POST a new upload session; its absolute URL."""
        async with self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/") as resp:
            await resp.read()
            if resp.status != 202:
                raise RuntimeError(f"POST upload: {resp.status}")
            return self._url(resp.headers["Location"])

    async def push_monolithic(self, repo: str, content: Content) -> None:
        """POST, then one PUT streaming the whole blob."""
        url = await self.start_upload(repo)
        body: Any = content.data if isinstance(content, SmallContent) else content.stream()
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(content.size)}
        async with self.session.put(self._with_digest(url, content.digest), data=body, headers=headers) as resp:
            text = await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"PUT blob: {resp.status} {text[:200]!r}")

    async def push_chunked(self, repo: str, content: Content, chunk: int) -> None:
        """POST, one PATCH per ``chunk`` bytes (Content-Range), then PUT with the digest."""
        url = await self.start_upload(repo)
        offset = 0
        while offset < content.size:
            end = min(content.size, offset + chunk)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(end - offset),
                "Content-Range": f"{offset}-{end - 1}",
            }
            async with self.session.patch(url, data=content.stream(offset, end), headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"PATCH chunk at {offset}: {resp.status}")
                url = self._url(resp.headers["Location"])
            offset = end
        async with self.session.put(self._with_digest(url, content.digest), headers={"Content-Length": "0"}) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"PUT final chunked: {resp.status}")

    async def pull(self, repo: str, digest: str, byte_range: tuple[int, int] | None = None) -> int:
        """GET a blob (or one byte range of it), discarding the bytes; the number received."""
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        received = 0
        async with self.session.get(f"{self.base}/v2/{repo}/blobs/{digest}", headers=headers) as resp:
            expected = 206 if byte_range else 200
            if resp.status != expected:
                raise RuntimeError(f"GET blob: {resp.status} (wanted {expected})")
            if resp.history:
                self.redirected += 1
            while True:
                data = await resp.content.readany()
                if not data:
                    break
                received += len(data)
        return received

    async def put_manifest(self, repo: str, tag: str, body: bytes) -> None:
        """PUT an OCI image manifest under ``tag``."""
        async with self.session.put(
            f"{self.base}/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST}
        ) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"PUT manifest: {resp.status}")

    async def get_json(self, path: str) -> Any:
        """GET ``path`` (below the base URL) and decode its JSON body; 200 expected."""
        async with self.session.get(f"{self.base}{path}") as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
            return json.loads(body)

    async def get_manifest(self, repo: str, tag: str) -> None:
        """GET a manifest by tag."""
        async with self.session.get(f"{self.base}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET manifest: {resp.status}")


# The figures ----------------------------------------------------------------------------------


async def _timed(coro: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await asyncio.wait_for(coro, PHASE_TIMEOUT)
    return time.perf_counter() - started


async def bench_big_blob(reg: Registry, result: ServerResult, sizes: Sizes, nonce: int) -> None:
    """Monolithic push + pull (and the pull again through ``result.direct``, the redirect-off
    server, when there is one), then chunked push + ranged pull, of one big blob each."""
    mb = sizes.big_blob / 1e6
    label = f"{sizes.big_blob // MiB} MiB"
    content = Content(nonce, sizes.big_blob)
    _ = content.digest  # hash before the clock starts
    took = await _timed(reg.push_monolithic("bench/big", content))
    result.add(f"{label} blob, monolithic push", mb / took, "MB/s")

    async def pull_all(via: Registry) -> None:
        received = await via.pull("bench/big", content.digest)
        assert received == sizes.big_blob, (received, sizes.big_blob)

    redirected = reg.redirected
    took = await _timed(pull_all(reg))
    if reg.redirected > redirected:
        result.add(f"{label} blob, pull, redirect on (307 followed)", mb / took, "MB/s")
    else:
        result.add(f"{label} blob, pull", mb / took, "MB/s")
    if result.direct is not None:
        direct = Registry(reg.session, result.direct)
        took = await _timed(pull_all(direct))
        assert direct.redirected == 0, "the redirect-off server redirected"
        result.add(f"{label} blob, pull, redirect off (bytes via the registry)", mb / took, "MB/s")
    received = 0

    chunked = Content(nonce + 1, sizes.big_blob)
    _ = chunked.digest
    took = await _timed(reg.push_chunked("bench/chunked", chunked, sizes.chunk))
    result.add(f"{label} blob, push in {sizes.chunk // MiB} MiB chunks", mb / took, "MB/s")

    async def pull_ranges() -> None:
        nonlocal received
        received = 0
        for start in range(0, sizes.big_blob, sizes.chunk):
            end = min(sizes.big_blob, start + sizes.chunk) - 1
            received += await reg.pull("bench/chunked", chunked.digest, (start, end))

    took = await _timed(pull_ranges())
    assert received == sizes.big_blob
    result.add(f"{label} blob, pull in {sizes.chunk // MiB} MiB ranges", mb / took, "MB/s")


async def bench_listing(reg: Registry, result: ServerResult, sizes: Sizes, nonce: int) -> None:
    """``repos`` repositories, each one config blob (the same bytes everywhere) and one manifest
    tagged ``v1``, pushed by ``repo_concurrency`` clients; then one client times at most
    ``listing_requests`` GETs (and at most ``listing_seconds``) of the catalog and of tag lists."""
    config = SmallContent(nonce, 10**9 + 2, 256)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [],
        }
    ).encode()
    names = [f"many/repo-{i:04d}" for i in range(sizes.repos)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for repo in names:
        queue.put_nowait(repo)
    created: list[str] = []
    deadline = time.monotonic() + PHASE_TIMEOUT

    async def creator() -> None:
        while time.monotonic() < deadline:
            try:
                repo = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await reg.push_monolithic(repo, config)
            await reg.put_manifest(repo, "v1", manifest)
            created.append(repo)

    took = await _timed(asyncio.gather(*(creator() for _ in range(sizes.repo_concurrency))))
    assert len(created) == sizes.repos, (len(created), sizes.repos)
    result.add(
        f"create {sizes.repos} repos (blob POST+PUT, manifest PUT), {sizes.repo_concurrency} clients",
        sizes.repos / took, "repos/s",
    )

    async def timed_gets(label: str, path_of: Callable[[int], str], check: Callable[[int, Any], None]) -> None:
        latencies: list[float] = []
        stop_at = time.monotonic() + sizes.listing_seconds
        for i in range(sizes.listing_requests):
            if time.monotonic() >= stop_at:
                break
            started = time.perf_counter()
            body = await asyncio.wait_for(reg.get_json(path_of(i)), PHASE_TIMEOUT)
            latencies.append(time.perf_counter() - started)
            check(i, body)
        name = f"{label}, {sizes.repos} repos, {len(latencies)} sequential GETs"
        result.add(f"{name}: p50", percentile(latencies, 0.50) * 1000, "ms", higher_is_better=False)
        result.add(f"{name}: p99", percentile(latencies, 0.99) * 1000, "ms", higher_is_better=False)

    def check_catalog(_: int, body: Any) -> None:
        listed = [r for r in body["repositories"] if r.startswith("many/")]
        assert len(listed) == min(sizes.repos, CATALOG_PAGE), len(listed)

    def check_tags(i: int, body: Any) -> None:
        assert body == {"name": names[i * 7919 % len(names)], "tags": ["v1"]}, body

    await timed_gets(f"GET /v2/_catalog?n={CATALOG_PAGE}", lambda _: f"/v2/_catalog?n={CATALOG_PAGE}", check_catalog)
    await timed_gets(
        "GET /v2/<repo>/tags/list", lambda i: f"/v2/{names[i * 7919 % len(names)]}/tags/list", check_tags
    )


async def bench_small_blobs(reg: Registry, result: ServerResult, sizes: Sizes, nonce: int) -> None:
    """``small_count`` blobs of ``small_size`` bytes, pushed by ``small_concurrency`` workers."""
    blobs = [SmallContent(nonce, i, sizes.small_size) for i in range(sizes.small_count)]
    latencies: list[float] = []
    queue: asyncio.Queue[SmallContent] = asyncio.Queue()
    for blob in blobs:
        queue.put_nowait(blob)
    deadline = time.monotonic() + PHASE_TIMEOUT

    async def worker(n: int) -> None:
        while time.monotonic() < deadline:
            try:
                blob = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            await reg.push_monolithic(f"bench/small-{n % 4}", blob)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(sizes.small_concurrency))), PHASE_TIMEOUT)
    took = time.perf_counter() - started
    assert len(latencies) == len(blobs)
    name = f"{sizes.small_count} x {sizes.small_size // 1024} KiB blobs, {sizes.small_concurrency} clients"
    result.add(f"{name}: throughput", len(latencies) / took, "ops/s")
    result.add(f"{name}: p50", percentile(latencies, 0.50) * 1000, "ms", higher_is_better=False)
    result.add(f"{name}: p99", percentile(latencies, 0.99) * 1000, "ms", higher_is_better=False)


async def bench_manifest_gets(reg: Registry, result: ServerResult, sizes: Sizes, nonce: int) -> None:
    """``manifest_concurrency`` clients GET one manifest by tag for ``manifest_seconds``."""
    config = SmallContent(nonce, 10**9, 512)
    layer = SmallContent(nonce, 10**9 + 1, 64 * 1024)
    await reg.push_monolithic("bench/manifest", config)
    await reg.push_monolithic("bench/manifest", layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}],
        }
    ).encode()
    await reg.put_manifest("bench/manifest", "bench", manifest)
    latencies: list[float] = []
    stop_at = time.monotonic() + sizes.manifest_seconds
    max_requests = 5_000_000  # a count bound on top of the time bound

    async def worker() -> None:
        while time.monotonic() < stop_at and len(latencies) < max_requests:
            started = time.perf_counter()
            await reg.get_manifest("bench/manifest", "bench")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(sizes.manifest_concurrency))), PHASE_TIMEOUT)
    took = time.perf_counter() - started
    name = f"manifest GET by tag, {sizes.manifest_concurrency} clients, {sizes.manifest_seconds:g} s"
    result.add(f"{name}: throughput", len(latencies) / took, "req/s")
    result.add(f"{name}: p50", percentile(latencies, 0.50) * 1000, "ms", higher_is_better=False)
    result.add(f"{name}: p99", percentile(latencies, 0.99) * 1000, "ms", higher_is_better=False)


async def bench_fanout(reg: Registry, result: ServerResult, sizes: Sizes, nonce: int) -> None:
    """``fanout_clients`` clients pull the same ``fanout_blob`` bytes at once."""
    content = Content(nonce + 7, sizes.fanout_blob)
    await reg.push_monolithic("bench/fanout", content)
    totals: list[int] = []

    async def one() -> None:
        totals.append(await reg.pull("bench/fanout", content.digest))

    took = await _timed(asyncio.gather(*(one() for _ in range(sizes.fanout_clients))))
    assert totals == [sizes.fanout_blob] * sizes.fanout_clients
    name = f"{sizes.fanout_clients} clients pull one {sizes.fanout_blob // MiB} MiB blob"
    result.add(f"{name}: aggregate", sum(totals) / 1e6 / took, "MB/s")


async def run_all(
    name: str, url: str, sizes: Sizes, pid: int | None, direct: tuple[str, int | None] | None = None
) -> ServerResult:
    """Every figure against one registry; ``direct`` is (URL, pid) of a second server on the same
    storage with redirects disabled, when there is one."""
    result = ServerResult(name, url, direct=direct[0] if direct else None)
    nonce = int.from_bytes(os.urandom(6), "big")
    connector = aiohttp.TCPConnector(limit=max(sizes.manifest_concurrency, sizes.small_concurrency, sizes.fanout_clients) + 4)
    timeout = aiohttp.ClientTimeout(total=PHASE_TIMEOUT, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        reg = Registry(session, url)
        # The listing phase runs first, so the catalog holds exactly its repositories.
        for phase in (bench_listing, bench_big_blob, bench_small_blobs, bench_manifest_gets, bench_fanout):
            await phase(reg, result, sizes, nonce)
            nonce += 100
        if result.direct is not None or reg.redirected:
            result.notes.append(f"{reg.redirected} blob GETs were redirected and followed")
    if pid is not None:
        rss = peak_rss_mib(pid)
        if rss is not None:
            result.add("server peak RSS (VmHWM)", rss, "MiB", higher_is_better=False)
    if direct is not None and direct[1] is not None:
        rss = peak_rss_mib(direct[1])
        if rss is not None:
            result.add("redirect-off server peak RSS (one big pull)", rss, "MiB", higher_is_better=False)
    return result


# Servers ---------------------------------------------------------------------------------------

BENCH_LOG = {"log": {"level": "error", "accesslog": {"disabled": True}}}


NO_REDIRECT = {"storage": {"redirect": {"disable": True}}}


@contextlib.contextmanager
def started_servers(kind: str, backend: str, workdir: Path, s3: Any) -> Iterator[tuple[Server, Server | None]]:
    """A fresh ``kind`` server on fresh storage, quiet logs, and on S3 a second ``kind`` server on
    the same storage with redirects disabled (else None); stopped (by pid) and cleaned afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    if backend == "s3":
        config = s3_config(s3, f"bench-{kind}-{os.getpid()}-{int(time.time())}", **BENCH_LOG)
    else:
        config = filesystem_config(workdir / "data", **BENCH_LOG)
    servers: list[Server] = []
    try:
        servers.append(start_registry(kind, deep_merge(config, {}), workdir / "server"))
        direct = None
        if backend == "s3":
            direct = start_registry(kind, deep_merge(config, NO_REDIRECT), workdir / "server-noredirect")
            servers.append(direct)
        yield servers[0], direct
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)


@contextlib.contextmanager
def maybe_s3(backend: str, workdir: Path) -> Iterator[Any]:
    """A SeaweedFS server when ``backend`` is s3, else None."""
    if backend != "s3":
        yield None
        return
    from tests.s3server import seaweedfs

    with seaweedfs(root=workdir / "seaweedfs") as s3:
        yield s3


# Report ----------------------------------------------------------------------------------------


def source_revision() -> str:
    """The checkout's commit (``+dirty`` when files differ from it), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")



def markdown(results: list[ServerResult], sizes: Sizes, backend: str) -> str:
    """A markdown table: one row per figure, one column per server, plus Berth/reference."""
    names = [r.name for r in results]
    ratio = "berth" in names and "reference" in names
    header = ["figure", *names] + (["berth / reference"] if ratio else [])
    title = (
        f"Registry server benchmark — backend `{backend}`, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
        f"load average {os.getloadavg()[0]:.2f} at the end, commit {source_revision()}"
    )
    lines = [
        title,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    by_name = {r.name: {f.name: f for f in r.figures} for r in results}
    order: list[str] = []
    for r in results:
        for f in r.figures:
            if f.name not in order:
                order.append(f.name)
    for figure_name in order:
        cells = [figure_name]
        better_high = True
        for name in names:
            fig = by_name[name].get(figure_name)
            cells.append(f"{fig.value:,.1f} {fig.unit}" if fig else "—")
            if fig:
                better_high = fig.higher_is_better
        if ratio:
            berth_fig = by_name["berth"].get(figure_name)
            reference_fig = by_name["reference"].get(figure_name)
            if berth_fig and reference_fig and reference_fig.value:
                direction = "higher" if better_high else "lower"
                cells.append(f"{berth_fig.value / reference_fig.value:.2f}x ({direction} is better)")
            else:
                cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Sizes: `{json.dumps(asdict(sizes))}`",
              ("Client and servers share the machine's cores; the servers ran one after another, in column "
               "order (on S3 both use one SeaweedFS and the order can move figures by tens of percent: compare "
               "runs in both orders with `--servers`)."),
              (f"Catalog GETs ask for `?n={CATALOG_PAGE}`; the listing figures run first, so the catalog "
               "holds exactly the benchmark's repositories.")]
    if backend == "s3":
        lines.append("On S3 every blob GET except the 'redirect off' row is answered with 307 to a presigned "
                     "SeaweedFS URL that the client follows; the 'redirect off' row pulls from a second server "
                     "on the same storage with `storage.redirect.disable: true`.")
    elif backend == "filesystem":
        lines.append("Redirects do not apply to filesystem storage: both registries serve the bytes.")
    for r in results:
        lines += [f"{r.name}: {note}" for note in r.notes]
    return "\n".join(lines) + "\n"


def write_results(text: str, results: list[ServerResult], sizes: Sizes, backend: str) -> Path:
    """Write the table and the raw figures to ``bench/results/``; the markdown path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = RESULTS_DIR / f"server-{backend}-{stamp}.md"
    md.write_text(text)
    raw = {"backend": backend, "sizes": asdict(sizes), "results": [asdict(r) for r in results]}
    (RESULTS_DIR / f"server-{backend}-{stamp}.json").write_text(json.dumps(raw, indent=2))
    return md


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (64 MiB big blob, 200 small blobs, 2 s of GETs)")
    parser.add_argument("--backend", choices=["filesystem", "s3"], default="filesystem", help="storage for the servers started here")
    parser.add_argument("--servers", default="reference,berth", help="which servers to start (comma list of reference, berth)")
    parser.add_argument("--url", action="append", default=[], metavar="NAME=URL", help="benchmark a running registry instead (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="where started servers keep their data (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="print only; write nothing to bench/results/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    results: list[ServerResult] = []
    if args.url:
        for spec in args.url:
            name, sep, url = spec.partition("=")
            if not sep:
                name, url = url or name, name
            print(f"== {name} at {url}", flush=True)
            results.append(asyncio.run(run_all(name, url, sizes, None)))
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="berth-bench-"))
        try:
            with maybe_s3(args.backend, workdir) as s3:
                for kind in [k.strip() for k in args.servers.split(",") if k.strip()]:
                    with started_servers(kind, args.backend, workdir / kind, s3) as (server, direct):
                        print(f"== {kind} ({args.backend}) at {server.url}, pid {server.pid}", flush=True)
                        other = (direct.url, direct.pid) if direct else None
                        results.append(asyncio.run(run_all(kind, server.url, sizes, server.pid, other)))
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(results, sizes, args.backend if not args.url else "external")
    print()
    print(text)
    if not args.no_write:
        print(f"written to {write_results(text, results, sizes, args.backend if not args.url else 'external')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
