"""The storage contract over the in-memory backend."""

from __future__ import annotations

import pytest

from storage_backends.inmemory import InMemoryDriver
from tests.storage.contract import DriverContract, DriverFactory


class TestInMemoryDriver(DriverContract):
    """Nothing is shared between processes, so "another instance" is the same one."""

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        driver = InMemoryDriver()
        return lambda: driver
