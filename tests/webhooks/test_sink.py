"""The sink end to end against a real HTTP receiver: order, envelope, signatures, retries,
dead letters, replays, restarts, filters and shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from registry.webhooks import WebhookSink, replay, verify
from registry.webhooks.delivery import EndpointStatus
from registry.webhooks.envelope import CLOUDEVENTS_CONTENT_TYPE, DISTRIBUTION_CONTENT_TYPE
from tests.webhooks.conftest import make_config, make_event
from tests.webhooks.receiver import Receiver

SinkFactory = Callable[..., WebhookSink]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def status(sink: WebhookSink, name: str = "r") -> EndpointStatus:
    return next(s for s in await sink.status() if s.name == name)


def ep(receiver: Receiver, name: str = "r", **kw: Any) -> dict[str, Any]:
    return {"name": name, "url": receiver.url, **kw}


async def test_delivers_every_event_in_order_one_per_request(receiver: Receiver, sink_factory: SinkFactory) -> None:
    sink = sink_factory([ep(receiver)])
    await sink.open()
    events = [make_event(tag=f"t{n}") for n in range(25)]
    for i in range(0, 25, 5):
        await sink.publish(events[i:i + 5])
    got = await receiver.wait_for(25)
    await sink.close()
    assert [d.event["id"] for d in got] == [e.id for e in events]
    first = got[0]
    assert first.headers["Content-Type"] == DISTRIBUTION_CONTENT_TYPE
    assert list(first.json) == ["events"] and len(first.json["events"]) == 1
    assert list(first.event) == ["id", "timestamp", "action", "target", "request", "actor", "source"]
    assert first.event["target"]["tag"] == "t0"
    assert first.event["source"] == {"addr": "testhost:5000", "instanceID": "5e0a1f0c-0000-4000-8000-000000000001"}
    assert "Berth-Signature" not in first.headers


async def test_signed_deliveries_verify_and_configured_headers_are_sent(
        receiver: Receiver, sink_factory: SinkFactory) -> None:
    sink = sink_factory([ep(receiver, secret="hunter2", headers={"Authorization": ["Bearer abc"],
                                                                 "X-Team": ["a", "b"]})])
    await sink.open()
    await sink.publish([make_event(), make_event()])
    got = await receiver.wait_for(2)
    await sink.close()
    for d in got:
        assert verify("hunter2", d.body, d.headers["Berth-Signature"]) > 0
        assert d.headers["Authorization"] == "Bearer abc"
    assert d.headers.getall("X-Team") == ["a", "b"]


async def test_cloudevents_format(receiver: Receiver, sink_factory: SinkFactory) -> None:
    sink = sink_factory([ep(receiver, format="cloudevents")])
    await sink.open()
    event = make_event(tag="v2")
    await sink.publish([event])
    (d,) = await receiver.wait_for(1)
    await sink.close()
    assert d.headers["Content-Type"] == CLOUDEVENTS_CONTENT_TYPE
    assert d.json["specversion"] == "1.0" and d.json["id"] == event.id
    assert d.json["type"] == "io.berth.registry.push" and d.json["subject"] == "v2"
    assert d.json["data"]["target"]["repository"] == "lib/app"


async def test_failures_are_retried_without_reordering(receiver: Receiver, sink_factory: SinkFactory) -> None:
    receiver.fail_next = 3
    sink = sink_factory([ep(receiver)])
    await sink.open()
    events = [make_event() for _ in range(5)]
    await sink.publish(events)
    got = await receiver.wait_for(5)
    await sink.close()  # the last answer has been handled
    st = await status(sink)
    assert [d.event["id"] for d in got] == [e.id for e in events]
    assert [d.event["id"] for d in receiver.requests[:4]] == [events[0].id] * 4  # same id on every retry
    assert st.failed == 3 and st.delivered == 5 and st.pending == 0
    assert st.last_error.startswith("HTTP 503") and st.last_success_at is not None


async def test_unreachable_endpoint_records_the_error(sink_factory: SinkFactory, tmp_path: Path) -> None:
    down = Receiver()
    await down.start()
    url = down.url
    await down.stop()
    sink = sink_factory([{"name": "r", "url": url}])
    await sink.open()
    await sink.publish([make_event()])

    async def failed() -> bool:
        return (await status(sink)).failed >= 2

    await wait_until(failed)
    st = await status(sink)
    await sink.close()
    assert "Connect" in st.last_error and st.pending == 1 and st.delivered == 0


async def test_endpoint_down_for_a_while_gets_everything_when_back(sink_factory: SinkFactory) -> None:
    rec = Receiver()
    await rec.start()
    await rec.stop()  # keep the port, refuse connections
    sink = sink_factory([{"name": "r", "url": rec.url}])
    await sink.open()
    events = [make_event() for _ in range(10)]
    for e in events:
        await sink.publish([e])
    await asyncio.sleep(0.5)
    assert (await status(sink)).pending == 10
    await rec.start()
    got = await rec.wait_for(10)
    await sink.close()
    await rec.stop()
    assert [d.event["id"] for d in got] == [e.id for e in events]


async def test_old_events_are_dead_lettered_then_replayed(receiver: Receiver, tmp_path: Path) -> None:
    config = make_config([ep(receiver, maxretryage="300ms")], outbox=tmp_path / "ob")
    from registry.webhooks import outbox_directory, source_for

    sink = WebhookSink(config.notifications, outbox_directory(config), source_for(config))
    receiver.down = True
    await sink.open()
    lost = [make_event(), make_event()]
    await sink.publish(lost)

    async def dead() -> bool:
        st = await status(sink)
        return st.deadlettered == 2 and st.pending == 0  # in the file, and handled by the worker

    await wait_until(dead)
    st = await status(sink)
    assert st.pending == 0 and st.last_error.startswith("HTTP 503")
    entries = sink.outbox.dead_letters("r")  # type: ignore[union-attr]
    assert [e["event"]["id"] for e in entries] == [e.id for e in lost]
    assert all(e["error"].startswith("HTTP 503") and e["attempts"] >= 1 for e in entries)

    receiver.down = False
    later = make_event()
    await sink.publish([later])
    await receiver.wait_for(1)
    assert receiver.ids() == [later.id]

    counts = await asyncio.to_thread(replay, config, dead_letter=True)
    assert counts == {"r": 2}
    await receiver.wait_for(3)
    await sink.close()
    assert receiver.ids() == [later.id, lost[0].id, lost[1].id]
    assert (await asyncio.to_thread(sink.outbox.dead_letters, "r")) == []  # type: ignore[union-attr]


async def test_time_range_replay_resends_with_original_ids(receiver: Receiver, tmp_path: Path) -> None:
    config = make_config([ep(receiver)], outbox=tmp_path / "ob")
    from registry.webhooks import outbox_directory, source_for

    sink = WebhookSink(config.notifications, outbox_directory(config), source_for(config))
    await sink.open()
    early = make_event()
    await sink.publish([early])
    await receiver.wait_for(1)
    await asyncio.sleep(0.05)
    t0 = time.time()
    recent = [make_event(), make_event()]
    await sink.publish(recent)
    await receiver.wait_for(3)
    counts = await asyncio.to_thread(replay, config, since=t0)
    assert counts == {"r": 2}
    await receiver.wait_for(5)
    await sink.close()
    assert receiver.ids() == [early.id, recent[0].id, recent[1].id, recent[0].id, recent[1].id]


def dedupe(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


async def test_restart_mid_delivery_loses_and_skips_nothing(sink_factory: SinkFactory, tmp_path: Path) -> None:
    a, b = Receiver(delay=0.02), Receiver(delay=0.005)
    await a.start()
    await b.start()
    endpoints = [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}]
    sink = sink_factory(endpoints)
    await sink.open()
    events = [make_event() for _ in range(40)]
    await asyncio.gather(*(sink.publish([e]) for e in events[:20]))
    await sink.publish(events[20:])
    await a.wait_for(5)
    await sink.close(timeout=0)  # stop now: requests in flight are cancelled
    assert len(a.accepted) < 40
    sink = sink_factory(endpoints)
    await sink.open()
    await a.wait_for(40, timeout=20)
    await b.wait_for(40, timeout=20)
    await sink.close()
    await a.stop()
    await b.stop()
    want = [e.id for e in events]
    for rec in (a, b):
        ids = rec.ids()
        assert dedupe(ids) == want
        # at least once: a duplicate can only be the event in flight at the restart
        assert len(ids) - len(want) <= 1


async def test_publish_is_not_slowed_by_a_slow_endpoint(sink_factory: SinkFactory) -> None:
    slow = Receiver(delay=1.5)
    await slow.start()
    sink = sink_factory([{"name": "slow", "url": slow.url, "timeout": "5s"}])
    await sink.open()
    started = time.perf_counter()
    for _ in range(100):
        await sink.publish([make_event()])
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5, f"100 publishes took {elapsed:.2f}s with a slow endpoint"
    assert (await status(sink, "slow")).pending >= 98
    await sink.close(timeout=0.1)
    await slow.stop()


async def test_concurrent_publishes_are_group_committed(receiver: Receiver, sink_factory: SinkFactory) -> None:
    def commits() -> float:
        return REGISTRY.get_sample_value("berth_webhooks_publish_seconds_count") or 0.0

    sink = sink_factory([ep(receiver)])
    await sink.open()
    before = commits()
    events = [make_event() for _ in range(50)]
    await asyncio.gather(*(sink.publish([e]) for e in events))
    assert commits() - before < 50
    assert sink.committed == 50
    got = await receiver.wait_for(50)
    await sink.close()
    assert sorted(d.event["id"] for d in got) == sorted(e.id for e in events)


async def test_pull_events_only_when_enabled(receiver: Receiver, sink_factory: SinkFactory, tmp_path: Path) -> None:
    sink = sink_factory([ep(receiver)])
    await sink.open()
    await sink.publish([make_event("pull"), make_event("push")])
    await receiver.wait_for(1)
    await sink.close()
    assert [d.event["action"] for d in receiver.accepted] == ["push"]

    sink = sink_factory([ep(receiver)], directory=tmp_path / "other", events={"pull": True})
    await sink.open()
    await sink.publish([make_event("pull")])
    await receiver.wait_for(2)
    await sink.close()
    assert receiver.accepted[-1].event["action"] == "pull"


async def test_filters_and_references_per_config(sink_factory: SinkFactory) -> None:
    prod, tags = Receiver(), Receiver()
    await prod.start()
    await tags.start()
    sink = sink_factory([{"name": "prod", "url": prod.url, "repositories": ["prod/**"],
                          "ignore": {"actions": ["delete"]}},
                         {"name": "tags", "url": tags.url, "tags": ["v*"]}],
                        events={"includereferences": True})
    await sink.open()
    refs = ({"mediaType": "application/vnd.oci.image.config.v1+json", "size": 5, "digest": "sha256:" + "1" * 64},)
    e1 = make_event(repository="prod/web", tag="v1", references=refs)
    e2 = make_event(repository="dev/web", tag="v2")
    e3 = make_event(repository="prod/web", tag="latest")
    e4 = make_event("delete", repository="prod/web", tag="v3")
    await sink.publish([e1, e2, e3, e4])
    await prod.wait_for(2)
    await tags.wait_for(3)
    await asyncio.sleep(0.1)
    await sink.close()
    assert prod.ids() == [e1.id, e3.id]
    assert tags.ids() == [e1.id, e2.id, e4.id]
    assert prod.accepted[0].event["target"]["references"] == list(refs)
    await prod.stop()
    await tags.stop()


async def test_new_endpoint_starts_with_new_events_and_disabled_gets_nothing(
        sink_factory: SinkFactory, tmp_path: Path) -> None:
    a, b = Receiver(), Receiver()
    await a.start()
    await b.start()
    sink = sink_factory([{"name": "a", "url": a.url}, {"name": "b", "url": b.url, "disabled": True}])
    await sink.open()
    old = make_event()
    await sink.publish([old])
    await a.wait_for(1)
    await sink.close()
    sink = sink_factory([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}])
    await sink.open()
    new = make_event()
    await sink.publish([new])
    await a.wait_for(2)
    await b.wait_for(1)
    await sink.close()
    statuses = {s.name: s for s in await sink.status()}
    assert a.ids() == [old.id, new.id]
    assert b.ids() == [new.id]
    assert statuses["b"].delivered == 1
    await a.stop()
    await b.stop()


async def test_close_flushes_what_it_can_within_the_deadline(sink_factory: SinkFactory) -> None:
    fast, dead = Receiver(), Receiver(down=True)
    await fast.start()
    await dead.start()
    sink = sink_factory([{"name": "fast", "url": fast.url}, {"name": "dead", "url": dead.url}])
    await sink.open()
    events = [make_event() for _ in range(20)]
    await sink.publish(events)
    started = time.monotonic()
    await sink.close(timeout=3.0)
    took = time.monotonic() - started
    assert fast.ids() == [e.id for e in events]  # flushed before close returned
    assert took < 2.5  # the dead endpoint does not hold shutdown for the whole deadline
    await fast.stop()
    await dead.stop()


async def test_close_gives_up_at_the_deadline(sink_factory: SinkFactory) -> None:
    hang = Receiver(delay=1.5)
    await hang.start()
    sink = sink_factory([{"name": "h", "url": hang.url, "timeout": "10s"}])
    await sink.open()
    await sink.publish([make_event()])
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await sink.close(timeout=0.3)
    assert time.monotonic() - started < 1.5
    await hang.stop()


async def test_publish_after_close_fails(receiver: Receiver, sink_factory: SinkFactory) -> None:
    from registry.webhooks import OutboxError

    sink = sink_factory([ep(receiver)])
    await sink.open()
    await sink.close()
    with pytest.raises(OutboxError):
        await sink.publish([make_event()])


async def test_lagging_worker_falls_back_from_memory_to_the_log(
        sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.webhooks import delivery

    monkeypatch.setattr(delivery, "LIVE_MAX", 5)  # hand over at most 5 records in memory
    slow = await Receiver(delay=0.01).start()
    sink = sink_factory([{"name": "s", "url": slow.url}])
    await sink.open()
    events = [make_event() for _ in range(60)]
    await sink.publish(events[:1])
    await slow.wait_for(1)  # caught up: records now come from memory
    for e in events[1:]:
        await sink.publish([e])  # faster than delivery: overflows to reading the log
    got = await slow.wait_for(60, timeout=20)
    await sink.close()
    await slow.stop()
    assert [d.event["id"] for d in got] == [e.id for e in events]


async def test_worker_survives_an_io_error_and_resumes(receiver: Receiver, sink_factory: SinkFactory,
                                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver.down = True
    sink = sink_factory([ep(receiver, maxretryage="200ms")])
    await sink.open()
    blocker = tmp_path / "outbox" / "endpoints" / "r" / "deadletter.jsonl"
    await asyncio.to_thread(blocker.mkdir, parents=True)  # dead-lettering now fails with an OSError
    events = [make_event(), make_event()]
    await sink.publish(events)

    async def failed_loop() -> bool:
        return "delivery loop failed" in caplog.text

    await wait_until(failed_loop)
    assert not sink._tasks[0].done()
    await asyncio.to_thread(blocker.rmdir)

    async def dead() -> bool:
        st = await status(sink)
        return st.deadlettered == 2 and st.pending == 0  # in the file, and handled by the worker

    await wait_until(dead)
    st = await status(sink)
    await sink.close()
    assert [e["event"]["id"] for e in sink.outbox.dead_letters("r")] == [e.id for e in events]  # type: ignore[union-attr]
    assert st.pending == 0


async def test_prometheus_counters_follow_deliveries(receiver: Receiver, sink_factory: SinkFactory) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    name = "metrics-check"
    before = {o: sample("berth_webhooks_events_total", endpoint=name, outcome=o)
              for o in ("queued", "delivered", "filtered")}
    failed_before = sample("berth_webhooks_attempts_failed_total", endpoint=name)
    receiver.fail_next = 1
    sink = sink_factory([ep(receiver, name=name, ignore={"actions": ["delete"]})])
    await sink.open()
    await sink.publish([make_event(), make_event("delete"), make_event()])
    await receiver.wait_for(2)
    await sink.close()
    assert sample("berth_webhooks_pending", endpoint=name) == 0
    assert sample("berth_webhooks_events_total", endpoint=name, outcome="queued") - before["queued"] == 2
    assert sample("berth_webhooks_events_total", endpoint=name, outcome="delivered") - before["delivered"] == 2
    assert sample("berth_webhooks_events_total", endpoint=name, outcome="filtered") - before["filtered"] == 1
    assert sample("berth_webhooks_attempts_failed_total", endpoint=name) - failed_before == 1
    assert sample("berth_webhooks_responses_total", endpoint=name, code="503") >= 1
    assert sample("berth_webhooks_last_success_timestamp_seconds", endpoint=name) > 0
