"""Fixtures for the storage suites: one SeaweedFS server per session for the S3 backend."""

from tests.s3server import seaweedfs_fixture

s3_server = seaweedfs_fixture()
