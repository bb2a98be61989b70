"""The server process: SIGTERM drains in-flight uploads and exits 0; TLS; header limits; the debug listener."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from registry.config import Config, parse_config
from registry.server import Server
from tests.servers import Server as Process
from tests.servers import filesystem_config, start_berth

EXIT_TIMEOUT = 30.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- a real process


def _request(url: str, method: str = "GET") -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _start_upload(server: Process, name: str) -> str:
    status, headers = _request(f"{server.url}/v2/{name}/blobs/uploads/", "POST")
    assert status == 202
    return URL(headers["Location"]).path_qs


class SlowUpload(threading.Thread):
    """A monolithic ``PUT ...?digest=`` whose body trickles in over ``seconds`` (raw socket, by hand)."""

    def __init__(self, server: Process, location: str, data: bytes, seconds: float, stall_after: int | None = None):
        super().__init__(daemon=True)
        self.server, self.location, self.data, self.seconds = server, location, data, seconds
        self.stall_after = stall_after
        self.started = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        self.sent = 0

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=60) as sock:
                path = f"{self.location}&digest={sha256(self.data)}"
                sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(self.data)}\r\n"
                             "Content-Type: application/octet-stream\r\n\r\n".encode())
                pieces = 20
                step = -(-len(self.data) // pieces)
                for i in range(0, len(self.data), step):
                    if self.stall_after is not None and self.sent >= self.stall_after:
                        self.started.set()
                        time.sleep(self.seconds * 10)  # stall; the server gives up on us at its deadline
                        break
                    sock.sendall(self.data[i:i + step])
                    self.sent += len(self.data[i:i + step])
                    self.started.set()
                    time.sleep(self.seconds / pieces)
                reply = sock.recv(4096)
                self.status = int(reply.split(b" ", 2)[1]) if reply else None
        except BaseException as exc:  # reported to the test
            self.error = exc
            self.started.set()


def _connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.slow
def test_sigterm_lets_a_slow_upload_finish_then_exits_0(tmp_path: Path) -> None:
    config = filesystem_config(tmp_path / "data", http={"draintimeout": "30s"})
    server = start_berth(config, tmp_path / "run1")
    try:
        data = os.urandom(3 << 20)
        upload = SlowUpload(server, _start_upload(server, "team/app"), data, seconds=3.0)
        upload.start()
        assert upload.started.wait(10)
        time.sleep(0.5)
        os.kill(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _connect_refused(server.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _connect_refused(server.port), "the server still accepts connections while draining"
        assert server.proc is not None and server.proc.poll() is None, "the server quit before the upload finished"
        upload.join(EXIT_TIMEOUT)
        assert upload.error is None and upload.status == 201, (upload.status, upload.error)
        assert server.proc.wait(EXIT_TIMEOUT) == 0
    finally:
        server.stop()
    log = server.log()
    assert "draining" in log and "stopped" in log
    again = start_berth(config, tmp_path / "run2")
    try:
        status, headers = _request(f"{again.url}/v2/team/app/blobs/{sha256(data)}", "HEAD")
        assert status == 200 and int(headers["Content-Length"]) == len(data)
    finally:
        assert again.stop() == 0


@pytest.mark.slow
def test_sigterm_gives_up_on_a_stalled_upload_at_the_drain_deadline(tmp_path: Path) -> None:
    config = filesystem_config(tmp_path / "data", http={"draintimeout": "1s"})
    server = start_berth(config, tmp_path / "run")
    try:
        upload = SlowUpload(server, _start_upload(server, "team/app"), os.urandom(1 << 20), seconds=2.0,
                            stall_after=100_000)
        upload.start()
        assert upload.started.wait(10)
        time.sleep(0.3)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc is not None and server.proc.wait(EXIT_TIMEOUT) == 0
        assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_json_access_lines_from_a_real_process(tmp_path: Path) -> None:
    config = filesystem_config(tmp_path / "data", log={"level": "info", "formatter": "json"})
    server = start_berth(config, tmp_path / "run")
    try:
        status, _ = _request(f"{server.url}/v2/nothing/here/tags/list")
        assert status == 404
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "berth.access"]
    assert any(line["path"] == "/v2/nothing/here/tags/list" and line["status"] == 404
               and line["repository"] == "nothing/here" for line in access), access


# ------------------------------------------------------------------------------- in process


def _config(tmp_path: Path, extra: str = "") -> Config:
    return parse_config(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                        f"  maintenance:\n    uploadpurging:\n      enabled: false\n"
                        f"http:\n  addr: 127.0.0.1:0\n{extra}", environ={})


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Any]:
    """``await running(config)`` starts an in-process :class:`Server`; stopped at teardown."""
    servers: list[Server] = []

    async def start(config: Config) -> Server:
        server = Server(config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_from_config(tmp_path: Path, running: Any) -> None:
    cert, key = _self_signed(tmp_path)
    server = await running(_config(tmp_path, f"  tls:\n    certificate: {cert}\n    key: {key}\n"
                                             "    minimumtls: tls1.3\n"))
    url = server.addresses[0]
    assert url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v2/", ssl=trust) as resp:
            assert resp.status == 200
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{url}/v2/", ssl=old):
                pass
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url.replace("https://", "http://") + "/v2/"):
                pass


async def test_oversized_headers_are_refused(tmp_path: Path, running: Any) -> None:
    server = await running(_config(tmp_path, "  maxheadersize: 4KiB\n"))
    url = server.addresses[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v2/", headers={"X-Big": "a" * 3000}) as resp:
            assert resp.status == 200
        async with session.get(f"{url}/v2/", headers={"X-Big": "a" * 5000}) as resp:
            assert resp.status in (400, 431)


async def test_debug_listener_serves_probes_and_metrics_only(tmp_path: Path, running: Any) -> None:
    debug_port = _free_port()
    server = await running(_config(tmp_path, f"  debug:\n    addr: 127.0.0.1:{debug_port}\n"
                                             "    prometheus:\n      enabled: true\n"))
    main, debug = server.addresses
    assert debug.endswith(f":{debug_port}")
    async with aiohttp.ClientSession() as session:
        for base in (main, debug):
            for path in ("/metrics", "/healthz", "/readyz"):
                async with session.get(base + path) as resp:
                    assert resp.status == 200, (base, path)
        async with session.get(f"{debug}/v2/") as resp:
            assert resp.status == 404
        async with session.get(f"{main}/v2/") as resp:
            assert resp.status == 200


async def test_idle_connections_are_closed(tmp_path: Path, running: Any) -> None:
    server = await running(_config(tmp_path, "  idletimeout: 0.5s\n"))
    url = URL(server.addresses[0])
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # nothing sent: closed
        assert 0.3 < time.monotonic() - started < 5
    finally:
        writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_flushes_the_webhook_outbox(tmp_path: Path) -> None:
    """Push, SIGTERM at once: the event reaches the receiver before the process exits 0."""
    import http.server

    received: list[bytes] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    hook_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    config = filesystem_config(tmp_path / "data", notifications={
        "outbox": str(tmp_path / "outbox"),
        "endpoints": [{"name": "r", "url": f"http://127.0.0.1:{hook_server.server_address[1]}/events"}]})
    server = start_berth(config, tmp_path / "run")
    try:
        data = b"pushed right before shutdown"
        req = urllib.request.Request(f"{server.url}/v2/team/app/blobs/uploads/?digest={sha256(data)}", data=data,
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc is not None and server.proc.wait(EXIT_TIMEOUT) == 0
    finally:
        server.stop()
        hook_server.shutdown()
        hook_server.server_close()
    assert any(sha256(data).encode() in body for body in received), received


async def test_configured_headers_on_every_response(tmp_path: Path, running: Any) -> None:
    server = await running(_config(tmp_path, "  headers:\n    X-Content-Type-Options: [nosniff]\n"))
    url = server.addresses[0]
    async with aiohttp.ClientSession() as session:
        for path in ("/v2/", "/v2/no/such/manifests/v1", "/healthz"):
            async with session.get(url + path) as resp:
                assert resp.headers.getall("X-Content-Type-Options") == ["nosniff"], path


async def test_unix_socket_listener(tmp_path: Path, running: Any) -> None:
    sock = tmp_path / "berth.sock"
    config = parse_config(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                          f"http:\n  net: unix\n  addr: {sock}\n", environ={})
    await running(config)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as session:
        async with session.get("http://localhost/v2/") as resp:
            assert resp.status == 200
