"""Berth's configuration: Distribution's ``config.yml`` shape, read once, validated, frozen.

:func:`load_config` reads a YAML file (or nothing, for the defaults), applies
``REGISTRY_<SECTION>_<KEY>`` environment overrides the way Distribution does,
and returns a frozen :class:`Config`. Any unknown key or bad value raises
:class:`ConfigError` naming the dotted key. Defaults are the constants below.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, get_args, get_origin

import yaml

from auth.config import AuthConfig
from registry.configschema import (
    ByteSize,
    ConfigError,
    Duration,
    load_section,
    section_fields,
    unwrap_optional,
)
from registry.governance.config import AuditConfig, QuotaRule, RetentionConfig
from registry.webhooks.config import NotificationsConfig

DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_ROOT = "./data"
DEFAULT_MAX_MANIFEST = 4 << 20
DEFAULT_UPLOAD_PURGE_AGE = 168 * 3600.0
DEFAULT_UPLOAD_PURGE_INTERVAL = 24 * 3600.0
DEFAULT_MIN_FREE = 64 << 20  # /readyz answers 503 below this much free space on a local storage root
ENV_PREFIX = "REGISTRY_"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    formatter: str = "json"
    fields: dict[str, Any] = field(default_factory=dict)
    accesslog: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.level.lower() not in ("error", "warn", "warning", "info", "debug"):
            raise ValueError(f"level must be one of error, warn, info, debug; got {self.level!r}")
        if self.formatter not in ("json", "text", "logstash"):
            raise ValueError(f"formatter must be json or text, got {self.formatter!r}")


@dataclass(frozen=True)
class TLSConfig:
    certificate: str = ""
    key: str = ""
    clientcas: tuple[str, ...] = ()
    minimumtls: str = ""


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = False
    path: str = "/metrics"


@dataclass(frozen=True)
class DebugConfig:
    addr: str = ""
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)


@dataclass(frozen=True)
class HTTPConfig:
    addr: str = DEFAULT_ADDR
    net: str = "tcp"
    host: str = ""
    prefix: str = ""
    secret: str = ""
    relativeurls: bool = False
    draintimeout: Duration = Duration(30.0)
    tls: TLSConfig | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    debug: DebugConfig = field(default_factory=DebugConfig)
    http2: dict[str, Any] = field(default_factory=dict)
    # Berth limits:
    maxmanifestsize: ByteSize = ByteSize(DEFAULT_MAX_MANIFEST)
    maxheadersize: ByteSize = ByteSize(16 * 1024)
    idletimeout: Duration = Duration(75.0)

    def validate(self) -> None:
        if self.net not in ("tcp", "unix"):
            raise ValueError(f"net must be tcp or unix, got {self.net!r}")
        host, sep, port = self.addr.rpartition(":")
        if self.net == "tcp" and (not sep or not port.isdigit()):
            raise ValueError(f"addr must be host:port or :port, got {self.addr!r}")


@dataclass(frozen=True)
class FilesystemParams:
    rootdirectory: str = DEFAULT_ROOT
    maxthreads: int = 32


@dataclass(frozen=True)
class S3Params:
    accesskey: str = ""
    secretkey: str = ""
    sessiontoken: str = ""
    region: str = "us-east-1"
    regionendpoint: str = ""
    bucket: str = ""
    rootdirectory: str = ""
    forcepathstyle: bool = False
    secure: bool = True
    skipverify: bool = False
    v4auth: bool = True
    chunksize: ByteSize = ByteSize(10 << 20)
    multipartcopychunksize: ByteSize = ByteSize(32 << 20)
    multipartcopymaxconcurrency: int = 100
    multipartcopythresholdsize: ByteSize = ByteSize(32 << 20)
    storageclass: str = "STANDARD"
    encrypt: bool = False
    keyid: str = ""
    usedualstack: bool = False
    accelerate: bool = False
    objectacl: str = "private"
    loglevel: str = "off"
    maxthreads: int = 32
    timeout: Duration = Duration(30.0)

    def validate(self) -> None:
        if not self.bucket:
            raise ValueError("bucket is required")
        if self.chunksize < 5 << 20:
            raise ValueError("chunksize must be at least 5MiB (S3's minimum part size)")


@dataclass(frozen=True)
class UploadPurging:
    enabled: bool = True
    age: Duration = Duration(DEFAULT_UPLOAD_PURGE_AGE)
    interval: Duration = Duration(DEFAULT_UPLOAD_PURGE_INTERVAL)
    dryrun: bool = False


@dataclass(frozen=True)
class ReadOnly:
    enabled: bool = False


@dataclass(frozen=True)
class Maintenance:
    uploadpurging: UploadPurging = field(default_factory=UploadPurging)
    readonly: ReadOnly = field(default_factory=ReadOnly)


@dataclass(frozen=True)
class Toggle:
    enabled: bool = False


@dataclass(frozen=True)
class Redirect:
    disable: bool = False


@dataclass(frozen=True)
class StorageConfig:
    filesystem: FilesystemParams | None = None
    inmemory: dict[str, Any] | None = None
    s3: S3Params | None = None
    delete: Toggle = field(default_factory=Toggle)
    redirect: Redirect = field(default_factory=Redirect)
    maintenance: Maintenance = field(default_factory=Maintenance)
    cache: dict[str, Any] = field(default_factory=dict)
    tag: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        drivers = [n for n in ("filesystem", "inmemory", "s3") if getattr(self, n) is not None]
        if len(drivers) > 1:
            raise ValueError(f"configure exactly one storage driver, got {', '.join(drivers)}")

    @property
    def driver(self) -> str:
        for name in ("s3", "inmemory", "filesystem"):
            if getattr(self, name) is not None:
                return name
        return "filesystem"

    def driver_params(self) -> dict[str, Any]:
        """The chosen backend's constructor parameters."""
        if self.s3 is not None:
            return {k: v for k, v in vars(self.s3).items()}
        if self.inmemory is not None:
            return dict(self.inmemory)
        params = self.filesystem or FilesystemParams()
        return {"rootdirectory": params.rootdirectory, "maxthreads": params.maxthreads}


@dataclass(frozen=True)
class StorageDriverHealth:
    enabled: bool = True
    interval: Duration = Duration(10.0)
    threshold: int = 3
    minfree: ByteSize = ByteSize(DEFAULT_MIN_FREE)  # Berth: free-space floor of a filesystem root (0: off)


@dataclass(frozen=True)
class HealthConfig:
    storagedriver: StorageDriverHealth = field(default_factory=StorageDriverHealth)
    file: tuple[dict[str, Any], ...] = ()
    http: tuple[dict[str, Any], ...] = ()
    tcp: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class GCConfig:
    """Berth: scheduled garbage collection (off unless ``interval`` is set)."""

    interval: Duration = Duration(0.0)
    deleteuntagged: bool = False
    graceperiod: Duration = Duration(3600.0)
    quarantine: Duration = Duration(30.0)  # doomed blobs wait this long in the trash while racing pushes show up


@dataclass(frozen=True)
class Config:
    version: str = "0.1"
    log: LogConfig = field(default_factory=LogConfig)
    loglevel: str = ""
    http: HTTPConfig = field(default_factory=HTTPConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    validation: dict[str, Any] = field(default_factory=dict)
    compatibility: dict[str, Any] = field(default_factory=dict)
    gc: GCConfig = field(default_factory=GCConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    quotas: list[QuotaRule] = field(default_factory=list)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def validate(self) -> None:
        if str(self.version) != "0.1":
            raise ValueError(f"version must be 0.1, got {self.version!r}")


def _env_path(cls: type, parts: list[str]) -> list[str] | None:
    """Resolve ``['STORAGE','FILESYSTEM','ROOTDIRECTORY']`` to YAML keys by walking the schema."""
    if not parts:
        return []
    fields = section_fields(cls)
    # Longest match first, so keys that contain '_' (none in Distribution's schema) still resolve.
    for n in range(len(parts), 0, -1):
        candidate = "_".join(parts[:n]).lower()
        if candidate in fields:
            rest = parts[n:]
            if not rest:
                return [candidate]
            tp = unwrap_optional(fields[candidate])
            if hasattr(tp, "__dataclass_fields__"):
                sub = _env_path(tp, rest)
                if sub is not None:
                    return [candidate, *sub]
            elif get_origin(tp) is dict or tp is dict:
                return [candidate, "_".join(rest).lower()]
    return None


def apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``REGISTRY_*`` variables onto the raw mapping (values parsed as YAML scalars)."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name.startswith("REGISTRY_PROXY"):
            continue
        parts = name[len(ENV_PREFIX):].split("_")
        path = _env_path(Config, parts)
        if path is None:
            continue  # Distribution ignores variables it cannot map; so do we.
        try:
            value = yaml.safe_load(environ[name]) if environ[name] != "" else ""
        except yaml.YAMLError:
            value = environ[name]
        node = raw
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = value
    return raw


def parse_config(text: str | None, environ: Mapping[str, str] | None = None) -> "Config":
    """Parse YAML text (or None for defaults) plus env overrides into a validated Config."""
    raw: Any = {}
    if text:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config is not valid YAML: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError("config: expected a mapping at the top level")
    raw = apply_env(raw, os.environ if environ is None else environ)
    if raw.get("proxy"):
        raise ConfigError("proxy: pull-through cache mode is not supported by Berth")
    raw.pop("proxy", None)
    raw.pop("redis", None)  # Distribution's cache; Berth needs none.
    raw.pop("reporting", None)
    return load_section(Config, raw)  # type: ignore[no-any-return]


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> "Config":
    """Read the config file at ``path`` (None: defaults only) and apply env overrides.

    Errors name the file (a YAML error also its line) and the dotted key."""
    text = None
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return parse_config(text, environ)
    except ConfigError as exc:
        if not path:
            raise
        message = str(exc).replace('in "<unicode string>", ', "")
        raise ConfigError(f"{path}: {message}") from None


def load_command_config(path: str | None = None, *, root: str | None = None, addr: str | None = None,
                        environ: Mapping[str, str] | None = None) -> "Config":
    """The config every ``berth`` server-side command runs on (``serve``, ``gc``, ``du``, ``webhooks``, …).

    ``path`` (``--config``) or, without one, the zero-config defaults (filesystem under
    :data:`DEFAULT_ROOT`, listening on :data:`DEFAULT_ADDR`), then the ``REGISTRY_*`` environment;
    ``root`` (``--root``) replaces the filesystem root directory and ``addr`` (``--addr``) the
    listen address. ``--root`` with a config that selects another storage driver is an error.
    """
    config = load_config(path, environ)
    if root is not None:
        storage = config.storage
        if storage.driver != "filesystem":
            raise ConfigError(f"--root names a filesystem folder, but the config's storage is {storage.driver}")
        fs = replace(storage.filesystem or FilesystemParams(), rootdirectory=root)
        config = replace(config, storage=replace(storage, filesystem=fs))
    if addr is not None:
        if not addr.rpartition(":")[2].isdigit():
            raise ConfigError(f"--addr: expected HOST:PORT or :PORT, got {addr!r}")
        config = replace(config, http=replace(config.http, addr=addr))
    return config


def add_config_arguments(parser: "argparse.ArgumentParser") -> None:
    """``--config`` and ``--root``, as every server-side ``berth`` verb takes them (see :func:`command_config`)."""
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="config file (Distribution's config.yml shape); default: the built-in defaults")
    parser.add_argument("--root", metavar="DIR",
                        help="filesystem storage folder (storage.filesystem.rootdirectory; default ./data)")


def command_config(args: "argparse.Namespace") -> "Config":
    """:func:`load_command_config` for a verb parsed with :func:`add_config_arguments` (and ``--addr``)."""
    return load_command_config(getattr(args, "config", None), root=getattr(args, "root", None),
                               addr=getattr(args, "addr", None))


__all__ = ["Config", "ConfigError", "ByteSize", "Duration", "add_config_arguments", "command_config",
           "load_command_config", "load_config", "parse_config",
           "get_args"]
