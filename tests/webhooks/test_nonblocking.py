"""Nothing the sink does blocks the event loop: open, publish, deliver, retry, dead-letter, replay, status, close."""

from __future__ import annotations

import asyncio
from pathlib import Path

from blockbuster import blockbuster_ctx

from registry.webhooks import WebhookSink, outbox_directory, replay, source_for
from tests.webhooks.conftest import make_config, make_event
from tests.webhooks.receiver import Receiver


async def test_sink_never_blocks(tmp_path: Path) -> None:
    with blockbuster_ctx():
        ok = await Receiver().start()
        flaky = await Receiver(down=True).start()
        config = make_config([{"name": "ok", "url": ok.url, "secret": "s"},
                              {"name": "flaky", "url": flaky.url, "maxretryage": "200ms"}], outbox=tmp_path / "ob")
        sink = WebhookSink(config.notifications, outbox_directory(config), source_for(config))
        await sink.open()
        await asyncio.gather(*(sink.publish([make_event()]) for _ in range(20)))
        await ok.wait_for(20)
        for _ in range(200):
            if (await sink.status())[1].deadlettered == 20:
                break
            await asyncio.sleep(0.05)
        flaky.down = False
        assert await asyncio.to_thread(replay, config, endpoints=["flaky"], dead_letter=True) == {"flaky": 20}
        await flaky.wait_for(20)
        await sink.close()
        await ok.stop()
        await flaky.stop()
