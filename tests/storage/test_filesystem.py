"""The storage contract over the filesystem backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_backends.filesystem import FilesystemDriver
from tests.storage.contract import DriverContract, DriverFactory


class TestFilesystemDriver(DriverContract):
    """Each driver instance opens the same root directory."""

    @pytest.fixture
    def driver_factory(self, tmp_path: Path) -> DriverFactory:
        root = tmp_path / "root"
        root.mkdir()
        return lambda: FilesystemDriver(rootdirectory=str(root), maxthreads=4)
