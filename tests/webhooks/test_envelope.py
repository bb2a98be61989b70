"""The Distribution envelope matches what the reference registry (Distribution 2.8.2) sent.

``data/distribution-2.8-events.jsonl`` holds the bodies ``docker-registry`` 2.8.2
posted (``includereferences: true``) for: two blob pushes, a manifest push by
tag, the same manifest by digest, an index push by tag, a Docker v2 manifest
push, a cross-repository mount, pulls by tag, by digest and HEAD, blob pull and
HEAD, a manifest delete (one manifest event plus one event per tag). The live
side-by-side comparison is in ``test_interop.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from registry.events import Event, RequestInfo
from registry.webhooks.envelope import (
    CLOUDEVENTS_CONTENT_TYPE,
    DISTRIBUTION_CONTENT_TYPE,
    Source,
    event_record,
    go_timestamp,
    render,
)

REFERENCE = Path(__file__).parent / "data" / "distribution-2.8-events.jsonl"
# Values that differ between any two runs (generated ids, clocks, client ports, the host).
VOLATILE = {("id",), ("timestamp",), ("request", "id"), ("request", "addr"), ("source", "instanceID"),
            ("source", "addr")}


def reference_events() -> list[dict[str, Any]]:
    """The captured events, one per POST."""
    out = []
    for line in REFERENCE.read_text().splitlines():
        envelope = json.loads(line)
        assert list(envelope) == ["events"] and len(envelope["events"]) == 1
        out.append(envelope["events"][0])
    return out


def berth_event_like(ref: dict[str, Any]) -> Event:
    """The Event a Berth handler builds for the same operation."""
    t, r = ref["target"], ref["request"]
    return Event(
        action=ref["action"], repository=t.get("repository", ""),
        request=RequestInfo(id="x", addr=r.get("addr", ""), host=r.get("host", ""), method=r["method"],
                            useragent=r["useragent"]),
        actor=ref["actor"].get("name", ""), media_type=t.get("mediaType", ""), size=t.get("size", 0),
        digest=t.get("digest", ""), tag=t.get("tag", ""), url=t.get("url", ""),
        references=tuple(t.get("references", ())), from_repository=t.get("fromRepository", ""),
    )


def shape(value: Any, path: tuple[str, ...] = ()) -> Any:
    """Keys in order with value types, and values except the volatile ones."""
    if isinstance(value, dict):
        return [(k, shape(v, path + (k,))) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v, path) for v in value]
    return (type(value).__name__, None if path in VOLATILE else value)


@pytest.mark.parametrize("index", range(15))
def test_event_matches_reference_key_by_key(index: int) -> None:
    ref = reference_events()[index]
    ours = event_record(berth_event_like(ref), Source("vm:5055", "instance"))
    assert shape(ours) == shape(ref)
    assert json.loads(render(ours, "distribution", True)[1]) == {"events": [ours]}


def test_reference_capture_covers_every_action() -> None:
    refs = reference_events()
    assert {e["action"] for e in refs} == {"push", "pull", "mount", "delete"}
    assert any("references" in e["target"] for e in refs)
    assert any(e["target"].keys() == {"repository", "tag"} for e in refs)  # tag delete
    assert any(e["target"].keys() == {"repository", "digest"} for e in refs)  # manifest/blob delete


def test_empty_actor_and_source_shapes() -> None:
    ev = Event(action="delete", repository="a/b", request=RequestInfo("", "", "", "DELETE", ""), tag="v1")
    rec = event_record(ev, Source("", ""))
    assert rec["actor"] == {} and rec["source"] == {}
    # request.id, method and useragent are never omitted (no omitempty in Distribution)
    assert rec["request"] == {"id": "", "method": "DELETE", "useragent": ""}
    assert rec["target"] == {"repository": "a/b", "tag": "v1"}
    with_actor = event_record(Event(action="push", repository="a", request=ev.request, actor="alice"), Source("", ""))
    assert with_actor["actor"] == {"name": "alice"}


@pytest.mark.parametrize(("when", "text"), [
    (datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=timezone.utc), "2024-01-02T03:04:05.12Z"),
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "2024-01-02T03:04:05Z"),
    (datetime(2024, 1, 2, 3, 4, 5, 1), "2024-01-02T03:04:05.000001Z"),
])
def test_go_timestamp(when: datetime, text: str) -> None:
    assert go_timestamp(when) == text


def test_references_only_when_included() -> None:
    ref = next(e for e in reference_events() if "references" in e["target"])
    rec = event_record(berth_event_like(ref), Source("h:1", "i"))
    ctype, body = render(rec, "distribution", False)
    assert ctype == DISTRIBUTION_CONTENT_TYPE == "application/vnd.docker.distribution.events.v1+json"
    assert "references" not in json.loads(body)["events"][0]["target"]
    assert "references" in json.loads(render(rec, "distribution", True)[1])["events"][0]["target"]


def test_reference_descriptors_keep_distribution_keys_only() -> None:
    ev = Event(action="push", repository="a", request=RequestInfo("r", "", "", "PUT", ""),
               references=({"mediaType": "m", "size": 3, "digest": "sha256:" + "a" * 64,
                            "platform": {"os": "linux"}, "annotations": {"k": "v"}},))
    rec = event_record(ev, Source("", ""))
    assert rec["target"]["references"] == [{"mediaType": "m", "size": 3, "digest": "sha256:" + "a" * 64,
                                            "annotations": {"k": "v"}}]


def test_cloudevents_structured_mode() -> None:
    ref = reference_events()[2]  # manifest push by tag
    rec = event_record(berth_event_like(ref), Source("vm:5055", "inst"))
    ctype, body = render(rec, "cloudevents", True)
    assert ctype == CLOUDEVENTS_CONTENT_TYPE
    ce = json.loads(body)
    assert ce["specversion"] == "1.0"
    assert ce["id"] == rec["id"]
    assert ce["type"] == "io.berth.registry.push"
    assert ce["source"] == "berth://127.0.0.1:5055/lib/app"
    assert ce["subject"] == "v1"
    assert ce["time"] == rec["timestamp"]
    assert ce["datacontenttype"] == "application/json"
    assert ce["data"] == rec
    assert "references" not in json.loads(render(rec, "cloudevents", False)[1])["data"]["target"]
