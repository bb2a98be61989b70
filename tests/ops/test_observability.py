"""Health and readiness probes, Prometheus metrics, structured access logs and log configuration."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from registry.config import parse_config
from registry.maintenance import GCOptions, collect_garbage
from registry.observability import OBSERVABILITY, configure_logging, mark_draining
from storage_backends import StorageDriver, StorageUnavailable, create_driver
from tests.ops.conftest import make_config, push_blob, push_image, sha256
from tests.ops.faults import HookedDriver

METRICS = "http:\n  debug:\n    prometheus:\n      enabled: true\n"


@pytest.fixture
async def fs_driver(tmp_path: Any) -> AsyncIterator[StorageDriver]:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})
    yield driver
    await driver.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: Any, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


# ------------------------------------------------------------------------------------ probes


async def test_healthz_and_readyz_answer_outside_v2(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver)
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ok", "checks": {"storage": "ok"}}
    assert "Docker-Distribution-API-Version" not in resp.headers


async def test_readyz_fails_while_storage_is_unreachable(fs_driver: StorageDriver, app_client: Any) -> None:
    down = False

    async def hook(op: str, paths: tuple[str, ...]) -> None:
        if down and op == "health":
            raise StorageUnavailable("injected outage")

    client = await app_client(HookedDriver(fs_driver, hook))
    assert (await client.get("/readyz")).status == 200
    down = True
    await asyncio.sleep(1.05)  # past the one-second cache
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"status": "unavailable", "checks": {"storage": "StorageUnavailable"}}
    assert (await client.get("/healthz")).status == 200  # alive, just not ready
    down = False
    await asyncio.sleep(1.05)
    assert (await client.get("/readyz")).status == 200


@pytest.fixture
def tiny_fs(tmp_path: Any) -> Iterator[str]:
    """A 1 MiB tmpfs (needs mount privileges), unmounted afterwards."""
    import subprocess

    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield str(mountpoint)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


async def test_readyz_is_503_below_the_free_space_floor(tiny_fs: str, app_client: Any) -> None:
    """A nearly full disk: 200 while above ``health.storagedriver.minfree``, 503 with the reason below it."""
    driver = create_driver("filesystem", {"rootdirectory": tiny_fs})
    try:
        client = await app_client(driver, "health:\n  storagedriver:\n    minfree: 512KiB\n")
        resp = await client.get("/readyz")
        assert resp.status == 200, await resp.text()
        with open(os.path.join(tiny_fs, "filler"), "wb") as fh:
            fh.write(b"\0" * (700 << 10))
        await asyncio.sleep(1.05)  # past the one-second cache
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["storage"].startswith("low disk space:")
        assert "health.storagedriver.minfree (524288)" in body["checks"]["storage"]
        metrics = await scrape_free(client)
        assert 0 <= metrics < 512 << 10
        os.unlink(os.path.join(tiny_fs, "filler"))
        await asyncio.sleep(1.05)
        assert (await client.get("/readyz")).status == 200
    finally:
        await driver.close()


async def scrape_free(client: Any) -> float:
    from prometheus_client import REGISTRY, generate_latest

    return value(samples(generate_latest(REGISTRY).decode()), "berth_storage_free_bytes")


async def test_the_default_floor_refuses_a_1mib_disk_and_0_turns_it_off(tiny_fs: str, app_client: Any) -> None:
    driver = create_driver("filesystem", {"rootdirectory": tiny_fs})
    try:
        assert (await (await app_client(driver)).get("/readyz")).status == 503  # 64 MiB default
        off = await app_client(driver, "health:\n  storagedriver:\n    minfree: 0\n")
        assert (await off.get("/readyz")).status == 200
    finally:
        await driver.close()


async def test_readyz_floor_above_the_real_free_space(fs_driver: StorageDriver, app_client: Any) -> None:
    """Without mount privileges: a floor just above what the disk has free is refused too."""
    from registry.observability import free_bytes

    floor = free_bytes(fs_driver.local_path("/") or "") + (1 << 30)
    client = await app_client(fs_driver, f"health:\n  storagedriver:\n    minfree: {floor}\n")
    resp = await client.get("/readyz")
    assert resp.status == 503 and "low disk space" in (await resp.json())["checks"]["storage"]


async def test_readyz_can_skip_the_storage_check(fs_driver: StorageDriver, app_client: Any) -> None:
    async def hook(op: str, paths: tuple[str, ...]) -> None:
        if op == "health":
            raise StorageUnavailable("always down")

    client = await app_client(HookedDriver(fs_driver, hook),
                              "health:\n  storagedriver:\n    enabled: false\n")
    assert (await client.get("/readyz")).status == 200


async def test_readyz_is_503_while_draining(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver)
    mark_draining(client.server.app)
    assert client.server.app[OBSERVABILITY].draining
    resp = await client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["status"] == "draining"


def htpasswd_config(tmp_path: Any, users: dict[str, str], policy: str | None = None, extra: str = "") -> Any:
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in users.items()]
    (tmp_path / "htpasswd").write_text("\n".join(lines) + "\n")
    text = f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n"
    if policy is not None:
        (tmp_path / "policy.yml").write_text(policy)
        text += f"  policy:\n    path: {tmp_path / 'policy.yml'}\n"
    return make_config(text + extra)


async def test_probes_and_metrics_need_no_credentials(fs_driver: StorageDriver, app_client: Any,
                                                      tmp_path: Any) -> None:
    client = await app_client(fs_driver, config=htpasswd_config(tmp_path, {"alice": "pw"}, extra=METRICS))
    assert (await client.get("/v2/")).status == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200, path


# ----------------------------------------------------------------------------------- metrics


async def test_metrics_are_off_unless_enabled(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver)
    assert (await client.get("/metrics")).status == 404


async def test_request_storage_and_gc_metrics(fs_driver: StorageDriver, app_client: Any) -> None:
    import registry.webhooks.metrics  # noqa: F401  (the webhook collectors live in the same registry)

    client = await app_client(fs_driver, METRICS)
    before = await scrape(client)
    layer = os.urandom(2 << 20)  # above the small-blob shortcut: streamed into an upload, then moved
    _, manifest, blobs = await push_image(client, "team/app", "v1", layers=[layer])
    resp = await client.get(f"/v2/team/app/blobs/{sha256(layer)}")
    assert await resp.read() == layer
    orphan = await push_blob(client, "team/app", os.urandom(1234))
    await collect_garbage(fs_driver, GCOptions(grace_period=0, clock_slack=0, quarantine=0))
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("berth_http_requests_total", route="manifest", method="PUT", status="201") == 1
    assert delta("berth_http_requests_total", route="upload_start", method="POST", status="201") == 3
    assert delta("berth_http_requests_total", route="blob", method="GET", status="200") == 1
    assert delta("berth_http_request_duration_seconds_count", route="blob", method="GET") == 1
    assert delta("berth_http_request_body_bytes_total", route="upload_start") >= len(layer) + 1234
    assert delta("berth_http_response_bytes_total", route="blob") >= len(layer)
    assert delta("berth_storage_operation_seconds_count", driver="filesystem", operation="put_content") > 0
    assert delta("berth_storage_operation_seconds_count", driver="filesystem", operation="move") >= 1
    assert delta("berth_gc_runs_total", outcome="ok") == 1
    assert delta("berth_gc_bytes_freed_total") == 1234
    assert delta("berth_gc_blobs_deleted_total") == 1
    assert value(after, "berth_uploads_in_progress") == 0
    names = {name for name, _ in after}
    assert "berth_webhooks_publish_seconds_count" in names
    assert orphan


async def test_storage_errors_are_counted(fs_driver: StorageDriver, app_client: Any) -> None:
    async def hook(op: str, paths: tuple[str, ...]) -> None:
        if op == "stat" and "/_layers/" in paths[0]:
            raise StorageUnavailable("injected", paths[0])

    client = await app_client(HookedDriver(fs_driver, hook), METRICS)
    before = await scrape(client)
    resp = await client.head(f"/v2/team/app/blobs/{sha256(b'x')}")
    assert resp.status == 503
    after = await scrape(client)
    labels = {"driver": "filesystem", "operation": "stat", "error": "StorageUnavailable"}
    assert value(after, "berth_storage_errors_total", **labels) - value(before, "berth_storage_errors_total",
                                                                         **labels) >= 1


async def test_metrics_path_is_configurable(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver, METRICS + "      path: /internal/prom\n")
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/internal/prom")).status == 200


async def test_uploads_in_progress_gauge(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver, METRICS)
    resp = await client.post("/v2/team/app/blobs/uploads/")
    location = URL(resp.headers["Location"]).path_qs
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.wait_for(release.wait(), 10)
        yield b"y" * 1000

    patch = asyncio.create_task(client.patch(location, data=body()))
    for _ in range(100):
        if value(await scrape(client), "berth_uploads_in_progress") >= 1:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the upload never showed in berth_uploads_in_progress")
    release.set()
    assert (await patch).status == 202
    assert value(await scrape(client), "berth_uploads_in_progress") == 0


# -------------------------------------------------------------------------------- access logs


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """The ``fields`` of every access-log record emitted during the test."""
    caplog.set_level(logging.INFO, logger="berth.access")
    lines: list[dict[str, Any]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(dict(record.fields))

    handler = Grab()
    logging.getLogger("berth.access").addHandler(handler)
    yield lines
    logging.getLogger("berth.access").removeHandler(handler)


async def wait_for_lines(lines: list[dict[str, Any]], count: int) -> None:
    """The access line is written right after the response: give the server a moment."""
    for _ in range(200):
        if len(lines) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} access lines, got {lines}")


async def test_one_access_line_per_request(fs_driver: StorageDriver, app_client: Any,
                                           access_lines: list[dict[str, Any]]) -> None:
    client = await app_client(fs_driver)
    data = os.urandom(20_000)
    digest = await push_blob(client, "team/app", data)
    resp = await client.get(f"/v2/team/app/blobs/{digest}", headers={"X-Request-Id": "req-123"})
    assert await resp.read() == data
    await wait_for_lines(access_lines, 2)
    upload, pull = access_lines[:2]
    assert upload["method"] == "POST" and upload["status"] == 201 and upload["route"] == "upload_start"
    assert upload["repository"] == "team/app"
    assert upload["bytes_in"] == len(data)
    assert pull == {**pull, "request_id": "req-123", "method": "GET", "path": f"/v2/team/app/blobs/{digest}",
                    "route": "blob", "repository": "team/app", "status": 200, "bytes_in": 0}
    assert pull["bytes_out"] >= len(data)  # sendfile included
    assert pull["duration_ms"] >= 0 and pull["user"] == ""
    assert resp.headers["X-Request-Id"] == "req-123"


async def test_access_lines_carry_the_user_and_no_secrets(fs_driver: StorageDriver, app_client: Any,
                                                          tmp_path: Any, access_lines: list[dict[str, Any]]) -> None:
    config = htpasswd_config(tmp_path, {"alice": "s3cret-pw"})
    client = await app_client(fs_driver, config=config)
    auth = {"Authorization": "Basic " + __import__("base64").b64encode(b"alice:s3cret-pw").decode()}
    resp = await client.post("/v2/team/app/blobs/uploads/", headers=auth)
    assert resp.status == 202
    location = URL(resp.headers["Location"]).path_qs
    state = URL(location).query["_state"]
    resp = await client.put(f"{location}&digest={sha256(b'abc')}", data=b"abc", headers=auth)
    assert resp.status == 201
    await wait_for_lines(access_lines, 2)
    assert [(line["user"], line["status"]) for line in access_lines[:2]] == [("alice", 202), ("alice", 201)]
    rendered = json.dumps(access_lines)
    assert state not in rendered and "s3cret" not in rendered and auth["Authorization"] not in rendered
    assert "_state=REDACTED" in access_lines[1]["query"]
    assert f"digest={sha256(b'abc')}".replace(":", "%3A") in access_lines[1]["query"]


async def test_aborted_requests_are_logged(fs_driver: StorageDriver, app_client: Any,
                                           access_lines: list[dict[str, Any]]) -> None:
    client = await app_client(fs_driver)
    resp = await client.post("/v2/team/app/blobs/uploads/")
    location = URL(resp.headers["Location"]).path_qs
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write((f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n").encode() + b"a" * 5000)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await wait_for_lines(access_lines, 2)
    aborted = access_lines[1]
    assert aborted["status"] == 499 and aborted["method"] == "PATCH" and aborted["bytes_in"] == 5000


async def test_access_log_can_be_disabled(fs_driver: StorageDriver, app_client: Any,
                                          access_lines: list[dict[str, Any]]) -> None:
    client = await app_client(fs_driver, "log:\n  accesslog:\n    disabled: true\n")
    assert (await client.get("/v2/")).status == 200
    await asyncio.sleep(0.1)
    assert access_lines == []


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_log_lines_with_level_and_static_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    config = parse_config("version: 0.1\nlog:\n  level: warn\n  fields:\n    service: registry\n", environ={})
    configure_logging(config, stream)
    logging.getLogger("berth.test").info("hidden at warn")
    logging.getLogger("berth.test").warning("shown", extra={"fields": {"repository": "team/app"}})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0] == {**lines[0], "level": "warning", "logger": "berth.test", "msg": "shown",
                        "service": "registry", "repository": "team/app"}
    assert "time" in lines[0]


def test_text_and_logstash_formats(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(parse_config("version: 0.1\nlog:\n  level: debug\n  formatter: text\n", environ={}), stream)
    logging.getLogger("berth.test").debug("details", extra={"fields": {"status": 201}})
    assert stream.getvalue().rstrip().endswith("DEBUG berth.test details status=201")
    stream = io.StringIO()
    configure_logging(parse_config("version: 0.1\nlog:\n  formatter: logstash\n", environ={}), stream)
    logging.getLogger("berth.test").info("hello")
    doc = json.loads(stream.getvalue())
    assert doc["@version"] == "1" and "@timestamp" in doc and doc["msg"] == "hello"


# ------------------------------------------------------------------------------- idle bodies


async def test_a_stalled_upload_body_is_cut_and_can_resume(fs_driver: StorageDriver, app_client: Any,
                                                           access_lines: list[dict[str, Any]]) -> None:
    client = await app_client(fs_driver, "http:\n  idletimeout: 0.5s\n")
    resp = await client.post("/v2/team/app/blobs/uploads/")
    location = URL(resp.headers["Location"]).path_qs
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write((f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n").encode() + b"a" * 3000)
    await writer.drain()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    assert 0.4 < loop.time() - started < 3
    writer.close()
    await wait_for_lines(access_lines, 2)
    assert access_lines[1]["status"] == 408
    # The upload survives: ask where it stands, send the rest, complete it.
    resp = await client.get(location)
    assert resp.status == 204
    offset = int(resp.headers["Range"].split("-")[1]) + 1 if resp.headers["Range"] != "0-0" else 0
    data = b"a" * 5000
    resp = await client.patch(location, data=data[offset:],
                              headers={"Content-Range": f"{offset}-{len(data) - 1}"})
    assert resp.status == 202, await resp.text()
    resp = await client.put(URL(resp.headers["Location"]).path_qs + f"&digest={sha256(data)}")
    assert resp.status == 201


async def test_a_slow_upload_that_keeps_moving_is_never_cut(fs_driver: StorageDriver, app_client: Any) -> None:
    client = await app_client(fs_driver, "http:\n  idletimeout: 0.5s\n")
    chunks = [os.urandom(2000) for _ in range(8)]
    data = b"".join(chunks)

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:  # 8 x 0.25s = 2s in all, four times the idle timeout
            await asyncio.sleep(0.25)
            yield chunk

    resp = await client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(data)}", data=body())
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/v2/team/app/blobs/{sha256(data)}")
    assert await resp.read() == data
