"""Session-wide fixtures: one SeaweedFS (real S3) server for every suite that needs S3.

It starts on first use, so a run that selects no S3 test starts none.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.s3server import SeaweedFS, seaweedfs_fixture

s3_server = seaweedfs_fixture()


@pytest.fixture
def s3_params(s3_server: SeaweedFS) -> dict[str, Any]:
    """``storage.s3`` parameters for a fresh, private root directory in the shared bucket."""
    return s3_server.driver_params(rootdirectory=f"/t-{uuid.uuid4().hex[:12]}", timeout=10)
