"""Deployment files: the Dockerfile, docker-compose.yml and examples/ are consistent, and what they run works.

No container engine can build images here, so the Dockerfile and the compose file are
checked by parsing (and with ``docker compose config`` when a compose plugin exists);
what they would run — the example configs, the health check command, the compose
config on S3 — is run for real against local processes.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth.policy import parse_policy
from registry.config import parse_config
from tests.s3server import SeaweedFS
from tests.servers import Server, berth_argv, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            logical.append(current)
            current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    return instructions[starts[-1]:]


def test_dockerfile_slim_base_non_root_healthcheck() -> None:
    instructions = dockerfile()
    for op, args in instructions:
        if op == "FROM":
            assert args.split()[0].startswith("python:3.11-slim"), args
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} missing"
    final = dict(final_stage(instructions))
    user = final["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert "/healthz" in final["ENV"] and "BERTH_HEALTHCHECK_URL" in final["HEALTHCHECK"]
    assert final["EXPOSE"] == "5000"
    assert json.loads(final["ENTRYPOINT"]) == ["berth"]
    assert json.loads(final["CMD"]) == ["serve", "--config", "/etc/berth/config.yml"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    # The config baked into the image listens where EXPOSE and the health check look.
    config = parse_config((EXAMPLES / "filesystem.yml").read_text(), environ={})
    assert config.http.addr == ":5000"


def healthcheck_command() -> list[str]:
    args = dict(final_stage(dockerfile()))["HEALTHCHECK"]
    return list(json.loads(args.split("CMD", 1)[1]))


def test_the_image_healthcheck_command_probes_a_real_server(tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "filesystem.yml").read_text())
    config["storage"]["filesystem"]["rootdirectory"] = str(tmp_path / "data")
    config["log"]["formatter"] = "text"
    server = _start(config, tmp_path / "run")
    command = healthcheck_command()
    assert command[0] == "python"
    env = dict(os.environ, BERTH_HEALTHCHECK_URL=f"{server.url}/healthz")
    try:
        ok = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, check=False)
        assert ok.returncode == 0
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
            assert b"berth_http_requests_total" in resp.read()
    finally:
        assert server.stop() == 0
    down = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, check=False,
                          capture_output=True)
    assert down.returncode != 0


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_services_ports_and_bucket_creation() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"minio", "create-bucket", "webhook-receiver", "berth"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    assert services["berth"]["ports"] == ["127.0.0.1:5000:5000"]

    mc = services["create-bucket"]
    assert mc["image"].startswith("minio/mc")
    assert mc["depends_on"]["minio"]["condition"] == "service_healthy"
    assert mc["restart"] == "no"
    script = " ".join(mc["command"])
    berth_config = parse_config((EXAMPLES / "compose.yml").read_text(), environ={})
    s3 = berth_config.storage.s3
    assert s3 is not None and f"mc mb --ignore-existing local/{s3.bucket}" in script
    assert "http://minio:9000" in script and s3.regionendpoint == "http://minio:9000"

    berth = services["berth"]
    assert berth["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert berth["build"] == "."
    mounted = {v.split(":")[1]: v.split(":")[0] for v in berth["volumes"] if v.startswith("./")}
    assert (ROOT / mounted["/etc/berth/config.yml"]).resolve() == (EXAMPLES / "compose.yml").resolve()
    env = berth["environment"]
    creds = doc["x-minio-credentials"]
    assert (env["REGISTRY_STORAGE_S3_ACCESSKEY"], env["REGISTRY_STORAGE_S3_SECRETKEY"]) == (
        creds["MINIO_ROOT_USER"], creds["MINIO_ROOT_PASSWORD"])
    grace = berth["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > berth_config.http.draintimeout

    receiver = services["webhook-receiver"]
    endpoint = berth_config.notifications.endpoints[0]
    assert endpoint.url.startswith("http://webhook-receiver:") and endpoint.url.split(":")[2].startswith(
        receiver["expose"][0])
    compile(receiver["command"][-1], "webhook-receiver", "exec")


def test_docker_compose_config_accepts_the_file() -> None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode != 0:
            continue
        result = subprocess.run([*argv, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                                capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no docker compose plugin on this machine; the file is checked by parsing instead")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yml") if p.name != "policy.yml"))
def test_example_configs_load(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    on_s3 = "\n  s3:" in text
    env = {"REGISTRY_STORAGE_S3_ACCESSKEY": "key", "REGISTRY_STORAGE_S3_SECRETKEY": "secret"} if on_s3 else {}
    config = parse_config(text, environ=env)
    assert config.version == "0.1"
    assert config.storage.driver == ("s3" if on_s3 else "filesystem")


def test_example_policy_parses() -> None:
    policy = parse_policy((EXAMPLES / "policy.yml").read_bytes(), "policy.yml")
    assert policy.is_admin("admin") and not policy.is_admin("alice")


# ----------------------------------------------------------------- the compose config, for real


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", _Receiver.received
    server.shutdown()
    server.server_close()


def _start(config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> Server:
    config.setdefault("http", {})["addr"] = f"127.0.0.1:{free_port()}"
    process_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    server = Server("berth", workdir, config, [], process_env)
    server.argv = berth_argv(server.config_path)
    return server.start()


@pytest.mark.s3
def test_the_compose_config_serves_on_s3(tmp_path: Path, s3_server: SeaweedFS,
                                         receiver: tuple[str, list[bytes]]) -> None:
    """examples/compose.yml as docker-compose.yml runs it, with MinIO's address swapped for SeaweedFS."""
    config = yaml.safe_load((EXAMPLES / "compose.yml").read_text())
    params = s3_server.driver_params()
    config["storage"]["s3"].update(regionendpoint=params["regionendpoint"], bucket=params["bucket"],
                                   rootdirectory=f"/compose-{os.getpid()}-{tmp_path.name}")
    config["notifications"]["outbox"] = str(tmp_path / "outbox")
    config["notifications"]["endpoints"][0]["url"] = receiver[0]
    env = {"REGISTRY_STORAGE_S3_ACCESSKEY": params["accesskey"], "REGISTRY_STORAGE_S3_SECRETKEY": params["secretkey"],
           "REGISTRY_HTTP_SECRET": "compose-test-secret"}
    server = _start(config, tmp_path / "run", env)
    try:
        data = b"layer bytes on s3"
        digest = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
        req = urllib.request.Request(f"{server.url}/v2/team/app/blobs/uploads/?digest={digest}", data=data,
                                     method="POST", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201
        with urllib.request.urlopen(f"{server.url}/v2/team/app/blobs/{digest}", timeout=30) as resp:
            assert resp.read() == data  # redirect.disable: the bytes come through Berth
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "ok"
    finally:
        assert server.stop() == 0
    log = server.log()
    assert '"logger":"berth.access"' in log
    assert params["secretkey"] not in log and "compose-test-secret" not in log
