"""Berth's registry client: a library (pull, push, copy, inspect, save/load, a local OCI store) and the `berth` verbs.

The public surface is re-exported here; :mod:`registry.client.cli` is the thin command line.
"""

from registry.client.archive import LoadResult, SaveItem, load, save
from registry.client.authflow import RegistryAuth
from registry.client.credentials import Credential, DockerConfig
from registry.client.errors import (
    ArchiveError,
    AuthError,
    ClientError,
    DigestMismatch,
    NetworkError,
    NoSuchPlatform,
    NotFound,
    RegistryResponseError,
    UsageError,
)
from registry.client.platforms import Platform, default_platform
from registry.client.pull import PullResult, pull
from registry.client.push import PushResult, push
from registry.client.remote import CopyResult, copy, delete, inspect, tags
from registry.client.store import Image, Store
from registry.client.transport import RegistryClient, TransportOptions

__all__ = [
    "ArchiveError", "AuthError", "ClientError", "CopyResult", "Credential", "DigestMismatch", "DockerConfig",
    "Image", "LoadResult", "NetworkError", "NoSuchPlatform", "NotFound", "Platform", "PullResult", "PushResult",
    "RegistryAuth", "RegistryClient", "RegistryResponseError", "SaveItem", "Store", "TransportOptions",
    "UsageError", "copy", "default_platform", "delete", "inspect", "load", "pull", "push", "save", "tags",
]
