"""The config loader: Distribution's keys, env overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from registry.config import ConfigError, load_config, parse_config

DISTRIBUTION_CONFIG = """
version: 0.1
log:
  level: debug
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def test_a_registry2_config_loads_unchanged():
    cfg = parse_config(DISTRIBUTION_CONFIG, environ={})
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage.driver_params()["rootdirectory"] == "/var/lib/registry"
    assert cfg.storage.delete.enabled is True
    assert cfg.storage.maintenance.uploadpurging.age == 168 * 3600
    assert cfg.storage.maintenance.uploadpurging.interval == 24 * 3600
    assert cfg.http.addr == ":5000"
    assert cfg.http.secret == "asecretforlocaldevelopment"
    assert cfg.http.tls is not None and cfg.http.tls.certificate == "/certs/domain.crt"
    assert cfg.health.storagedriver.interval == 10
    assert cfg.log.level == "debug"


def test_defaults_without_a_file():
    cfg = load_config(None, environ={})
    assert cfg.http.addr == "127.0.0.1:5000"
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage.driver_params()["rootdirectory"] == "./data"
    assert cfg.storage.delete.enabled is False


def test_env_overrides_like_distribution():
    env = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/data",
        "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "2h",
        "REGISTRY_LOG_LEVEL": "warn",
        "REGISTRY_HTTP_SECRET": "s3cr3t",
        "UNRELATED": "x",
    }
    cfg = parse_config(DISTRIBUTION_CONFIG, environ=env)
    assert cfg.storage.driver_params()["rootdirectory"] == "/srv/data"
    assert cfg.http.addr == "127.0.0.1:6000"
    assert cfg.storage.maintenance.uploadpurging.age == 7200
    assert cfg.log.level == "warn"
    assert cfg.http.secret == "s3cr3t"


def test_env_can_choose_s3():
    env = {"REGISTRY_STORAGE_S3_BUCKET": "images", "REGISTRY_STORAGE_S3_REGION": "eu-west-1"}
    cfg = parse_config("version: 0.1\n", environ=env)
    assert cfg.storage.driver == "s3"
    assert cfg.storage.driver_params()["bucket"] == "images"


@pytest.mark.parametrize(
    "text, key",
    [
        ("storage:\n  filesystem:\n    rootdir: /x\n", "storage.filesystem.rootdir"),
        ("http:\n  adr: :5000\n", "http.adr"),
        ("storage:\n  delete:\n    enabled: maybe\n", "storage.delete.enabled"),
        ("storage:\n  maintenance:\n    uploadpurging:\n      age: forever\n", "storage.maintenance.uploadpurging.age"),
        ("log:\n  level: loud\n", "log"),
        ("version: 0.2\n", "config"),
        ("storage:\n  filesystem: {}\n  s3: {bucket: b}\n", "storage"),
        ("storage:\n  s3:\n    region: x\n", "storage.s3"),
        ("nonsense: 1\n", "nonsense"),
        ("proxy:\n  remoteurl: https://registry-1.docker.io\n", "proxy"),
    ],
)
def test_bad_keys_and_values_name_the_key(text, key):
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert str(info.value).startswith(key)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "missing.yml"), environ={})


def test_invalid_yaml():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("a: [1, 2\n", environ={})
