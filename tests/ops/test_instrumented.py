"""The instrumented driver changes nothing (the storage contract passes through it) and measures everything."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from storage_backends import PathNotFound, StorageUnavailable
from storage_backends.filesystem import FilesystemDriver
from storage_backends.instrumented import InstrumentedDriver
from tests.ops.faults import HookedDriver
from tests.storage.contract import DriverContract, DriverFactory


class TestInstrumentedDriver(DriverContract):
    """The whole contract suite, over the filesystem backend wrapped in the instrumented driver."""

    @pytest.fixture
    def driver_factory(self, tmp_path: Path) -> DriverFactory:
        root = tmp_path / "root"
        root.mkdir()
        return lambda: InstrumentedDriver(FilesystemDriver(rootdirectory=str(root), maxthreads=4))


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_latency_and_errors_are_recorded(tmp_path: Path) -> None:
    failing = {"on": False}

    async def hook(op: str, paths: tuple[str, ...]) -> None:
        if failing["on"]:
            raise StorageUnavailable("injected", paths[0] if paths else None)

    inner = FilesystemDriver(rootdirectory=str(tmp_path), maxthreads=2)
    driver = InstrumentedDriver(HookedDriver(inner, hook))
    labels = {"driver": "filesystem", "operation": "put_content"}
    before = _count("berth_storage_operation_seconds_count", **labels)
    await driver.put_content("/a/b", b"data")
    assert _count("berth_storage_operation_seconds_count", **labels) == before + 1

    not_found = _count("berth_storage_errors_total", driver="filesystem", operation="stat", error="PathNotFound")
    with pytest.raises(PathNotFound):
        await driver.stat("/missing")
    assert _count("berth_storage_errors_total", driver="filesystem", operation="stat",
                  error="PathNotFound") == not_found == 0  # an answer, not a failure

    err = {"driver": "filesystem", "operation": "get_content", "error": "StorageUnavailable"}
    before_err = _count("berth_storage_errors_total", **err)
    failing["on"] = True
    with pytest.raises(StorageUnavailable):
        await driver.get_content("/a/b")
    assert _count("berth_storage_errors_total", **err) == before_err + 1

    reader = {"driver": "filesystem", "operation": "reader", "error": "StorageUnavailable"}
    before_reader = _count("berth_storage_errors_total", **reader)
    with pytest.raises(StorageUnavailable):
        async for _ in driver.reader("/a/b"):
            pass
    assert _count("berth_storage_errors_total", **reader) == before_reader + 1
    failing["on"] = False
    assert [c async for c in driver.reader("/a/b")] == [b"data"]
    assert driver.local_path("/a/b") == inner.local_path("/a/b")
    await driver.close()
