"""Fixtures for the interop suite: images and skopeo (S3 comes from the root conftest)."""

from __future__ import annotations

import pytest

from tests.images import ImageSet, cached_standard_images
from tests.realclients.clients import Skopeo


@pytest.fixture(scope="session")
def images() -> ImageSet:
    """The standard test images."""
    return cached_standard_images()


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    """skopeo with a private auth file."""
    return Skopeo(tmp_path_factory.mktemp("skopeo"))
