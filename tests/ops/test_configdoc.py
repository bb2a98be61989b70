"""docs/configuration.md documents every config key, with its real default and a variable that works."""

from __future__ import annotations

from registry.config import Config, _env_path, parse_config
from tests.ops import configdoc


def test_every_key_is_documented_with_its_default_and_variable() -> None:
    current = configdoc.DOC.read_text()
    fresh = configdoc.regenerate(current)
    assert fresh == current, "docs/configuration.md is stale: run `python -m tests.ops.configdoc --write`"
    documented = configdoc.descriptions(current)
    assert set(documented) == {r.key for r in configdoc.rows()}
    empty = [key for key, text in documented.items() if not text]
    assert not empty, f"keys without a description in docs/configuration.md: {empty}"


def test_every_documented_variable_sets_its_key() -> None:
    for row in configdoc.rows():
        if row.variable == "—":
            continue
        name = row.variable.strip("`")
        parts = name[len("REGISTRY_"):].split("_")
        assert _env_path(Config, parts) == row.key.split("."), name


def test_variables_override_the_file() -> None:
    config = parse_config("version: 0.1\nhttp:\n  draintimeout: 5s\n", environ={
        "REGISTRY_HTTP_DRAINTIMEOUT": "45s",
        "REGISTRY_GC_QUARANTINE": "1m",
        "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED": "true",
    })
    assert config.http.draintimeout == 45 and config.gc.quarantine == 60
    assert config.http.debug.prometheus.enabled


def test_duration_and_size_formats() -> None:
    assert configdoc.format_duration(3600) == "1h"
    assert configdoc.format_duration(90) == "90s"
    assert configdoc.format_duration(300) == "5m"
    assert configdoc.format_duration(0.5) == "500ms"
    assert configdoc.format_size(4 << 20) == "4MiB"
    assert configdoc.format_size(1000) == "1000"
