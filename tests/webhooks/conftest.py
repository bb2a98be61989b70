"""Fixtures for the webhooks suite: a live receiver, configs, events and sinks on a temp outbox."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import yaml

from registry.config import Config, parse_config
from registry.events import Event, RequestInfo
from registry.webhooks import Source, WebhookSink
from registry.webhooks.config import NotificationsConfig
from tests.webhooks.receiver import Receiver

SOURCE = Source(addr="testhost:5000", instance_id="5e0a1f0c-0000-4000-8000-000000000001")
_counter = itertools.count(1)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1."""
    rec = await Receiver().start()
    yield rec
    await rec.stop()


def make_config(endpoints: list[dict[str, Any]], outbox: Path | str = "", **notifications: Any) -> Config:
    """A Config with these endpoints (fast backoff defaults for tests) and outbox."""
    eps = [{"timeout": "2s", "backoff": "20ms", "maxbackoff": "100ms", "threshold": 1, **ep} for ep in endpoints]
    section: dict[str, Any] = {"endpoints": eps, **notifications}
    if outbox:
        section["outbox"] = str(outbox)
    return parse_config(yaml.safe_dump({"version": "0.1", "notifications": section}), environ={})


def notifications(endpoints: list[dict[str, Any]], **extra: Any) -> NotificationsConfig:
    """Just the notifications section."""
    return make_config(endpoints, **extra).notifications


def make_event(action: str = "push", repository: str = "lib/app", **kw: Any) -> Event:
    """A plausible event; each call gets a distinct digest."""
    n = next(_counter)
    defaults: dict[str, Any] = {
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 100 + n,
        "digest": f"sha256:{n:064x}",
        "url": f"http://127.0.0.1:5000/v2/{repository}/manifests/sha256:{n:064x}",
        "request": RequestInfo(id=f"req-{n}", addr="127.0.0.1:40000", host="127.0.0.1:5000",
                               method="PUT", useragent="test/1.0"),
    }
    defaults.update(kw)
    return Event(action=action, repository=repository, **defaults)


@pytest.fixture
def sink_factory(tmp_path: Path) -> Callable[..., WebhookSink]:
    """Build (not open) a sink over ``tmp_path/outbox`` for the given endpoints."""

    def build(endpoints: list[dict[str, Any]], directory: Path | None = None, **extra: Any) -> WebhookSink:
        return WebhookSink(notifications(endpoints, **extra), directory or tmp_path / "outbox", SOURCE)

    return build
