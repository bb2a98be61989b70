"""The package's public surface (what the app, the CLI and receivers import)."""

from __future__ import annotations

import registry.webhooks as webhooks


def test_public_names() -> None:
    assert sorted(webhooks.__all__) == sorted([
        "ADMIN_PATH", "SIGNATURE_HEADER", "WEBHOOKS", "EndpointStatus", "Outbox", "OutboxError",
        "SignatureError", "Source", "WebhookSink", "offline_status", "outbox_directory", "replay", "setup",
        "sign", "source_for", "verify",
    ])
    for name in webhooks.__all__:
        assert getattr(webhooks, name) is not None
