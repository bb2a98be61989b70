"""The client's public surface (re-exported from ``registry.client``) and pure helpers."""

from __future__ import annotations

import datetime as dt

import pytest

import registry.client as client
from registry.client.errors import UsageError
from registry.client.platforms import Platform, select
from registry.client.store import humanize_age, humanize_size
from registry.digest import Digest
from registry.manifest import Descriptor


def test_public_surface_is_pinned() -> None:
    assert sorted(client.__all__) == sorted([
        "ArchiveError", "AuthError", "ClientError", "CopyResult", "Credential", "DigestMismatch", "DockerConfig",
        "Image", "LoadResult", "NetworkError", "NoSuchPlatform", "NotFound", "Platform", "PullResult", "PushResult",
        "RegistryAuth", "RegistryClient", "RegistryResponseError", "SaveItem", "Store", "TransportOptions",
        "UsageError", "copy", "default_platform", "delete", "inspect", "load", "pull", "push", "save", "tags"])
    for name in client.__all__:
        assert getattr(client, name).__doc__, name


def test_exit_codes_are_distinct() -> None:
    classes = [client.UsageError, client.AuthError, client.NotFound, client.DigestMismatch, client.NetworkError,
               client.NoSuchPlatform, client.ArchiveError, client.RegistryResponseError]
    assert len({c.exit_code for c in classes}) == len(classes)


def test_platforms() -> None:
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64")
    assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    with pytest.raises(UsageError):
        Platform.parse("linux")
    d = Digest.parse("sha256:" + "a" * 64)
    children = [Descriptor("m", d, 1, platform={"os": "linux", "architecture": "amd64"}),
                Descriptor("m", Digest.parse("sha256:" + "b" * 64), 1, platform={"os": "linux", "architecture": "arm", "variant": "v7"}),
                Descriptor("m", Digest.parse("sha256:" + "c" * 64), 1, platform={"os": "unknown", "architecture": "unknown"})]
    assert select(children, Platform("linux", "arm", "v7"), "x").digest.hex == "b" * 64
    with pytest.raises(client.NoSuchPlatform, match=r"available: linux/amd64, linux/arm/v7\)"):
        select(children, Platform("linux", "s390x"), "x")


def test_humanize() -> None:
    assert humanize_size(999) == "999B" and humanize_size(420347) == "420kB" and humanize_size(5_300_000_000) == "5.3GB"
    now = dt.datetime(2024, 1, 10, tzinfo=dt.timezone.utc)
    assert humanize_age("2024-01-07T23:00:00.123456789Z", now) == "2 days ago"
    assert humanize_age("", now) == "N/A"
