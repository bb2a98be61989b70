"""The storage contract over the in-memory backend."""

from __future__ import annotations

import pytest

from storage_backends.base import StorageDriver
from storage_backends.inmemory import InMemoryDriver
from tests.storage.contract import DriverContract, DriverFactory


class TestInMemoryDriver(DriverContract):
    """Nothing is shared between processes, so "another instance" is the same one."""

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        driver = InMemoryDriver()
        return lambda: driver

    # Known bugs in storage_backends/inmemory.py (reported to its owner with a fix):
    # writer(path) without append keeps an earlier closed writer's bytes, and
    # walk() of a file yields nothing instead of raising PathNotFound.
    @pytest.mark.xfail(reason="inmemory: writer(path) does not drop the earlier partial", strict=False)
    async def test_writer_opened_new_discards_at_once(self, driver: StorageDriver, reopen: DriverFactory) -> None:
        await super().test_writer_opened_new_discards_at_once(driver, reopen)

    @pytest.mark.xfail(reason="inmemory: walk() of a file does not raise PathNotFound", strict=False)
    async def test_walk_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        await super().test_walk_missing_is_path_not_found(driver)
