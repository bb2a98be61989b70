"""Nothing in garbage collection, du, the probes, metrics or access logging blocks the event loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from blockbuster import blockbuster_ctx

from registry.app import create_app
from registry.maintenance import GCOptions, collect_garbage, disk_usage
from registry.observability import server_kwargs
from storage_backends import create_driver
from tests.ops.conftest import make_config, push_blob, push_image


async def test_operations_never_block(tmp_path: Path) -> None:
    driver = create_driver("filesystem", {"rootdirectory": str(tmp_path / "data")})  # a constructor, not ours
    with blockbuster_ctx():
        config = make_config("http:\n  debug:\n    prometheus:\n      enabled: true\n"
                             "gc:\n  interval: 0.2s\n  graceperiod: 0s\n  quarantine: 0s\n")
        server = TestServer(create_app(config, driver=driver))
        await server.start_server(**server_kwargs())
        client: Any = TestClient(server)
        await client.start_server()
        try:
            await push_image(client, "team/app", "v1", layers=[os.urandom(100_000)])
            await push_blob(client, "team/app", b"garbage")
            for path in ("/healthz", "/readyz", "/metrics", "/admin/du", "/admin/gc"):
                assert (await client.get(path)).status == 200, path
            report = await collect_garbage(driver, GCOptions(grace_period=0, clock_slack=0, quarantine=0.1,
                                                             delete_untagged=True))
            assert report.blobs_scanned >= 3
            assert (await disk_usage(driver)).blobs >= 3
        finally:
            await client.close()
            await driver.close()
