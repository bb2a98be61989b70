"""Fixtures for the interop suite: images, skopeo, and an S3 server when an s3 run needs one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.images import ImageSet, cached_standard_images  # noqa: E402
from tests.realclients.clients import Skopeo  # noqa: E402
from tests.s3server import seaweedfs_fixture  # noqa: E402

s3_server = seaweedfs_fixture()
"""One SeaweedFS for the session, started only when an s3 parameter runs."""


@pytest.fixture(scope="session")
def images() -> ImageSet:
    """The standard test images."""
    return cached_standard_images()


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with a private auth file."""
    return Skopeo(tmp_path_factory.mktemp("skopeo"))
