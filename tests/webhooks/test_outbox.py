"""The outbox on disk: order, segments, torn tails, the owner lock, compaction, dead letters, replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.webhooks.outbox import EndpointState, Outbox, OutboxError, Record, read_records


def ev(n: int) -> dict[str, object]:
    return {"id": f"id-{n}", "action": "push", "target": {"repository": "r", "size": n}}


def test_append_assigns_consecutive_seqs_and_reads_back_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    first = box.append([ev(1), ev(2)])
    second = box.append([ev(3)])
    assert [r.seq for r in first + second] == [1, 2, 3]
    assert box.last_seq == 3
    assert [r.id for r in box.records(0)] == ["id-1", "id-2", "id-3"]
    assert [r.id for r in box.records(2)] == ["id-3"]
    box.close()


def test_segments_roll_and_reading_crosses_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path, segment_bytes=300)
    for n in range(1, 21):
        box.append([ev(n)])
    assert len(box.segments()) > 3
    assert [r.seq for r in box.records(0)] == list(range(1, 21))
    assert [r.seq for r in box.records(13)] == list(range(14, 21))
    reader = box.reader(5)
    got = []
    while batch := reader.read(limit=4):
        got += [r.seq for r in batch]
    assert got == list(range(6, 21))
    box.close()


def test_reader_stops_at_the_committed_seq_and_resumes(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([ev(1), ev(2), ev(3)])
    reader = box.reader(0)
    assert [r.seq for r in reader.read(upto=2)] == [1, 2]
    assert reader.read(upto=2) == []
    box.append([ev(4)])
    assert [r.seq for r in reader.read(upto=4)] == [3, 4]
    box.close()


def test_reopen_continues_the_sequence(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([ev(1), ev(2)])
    box.close()
    box = Outbox(tmp_path)
    assert box.last_seq == 2
    assert box.append([ev(3)])[0].seq == 3
    box.close()


def test_torn_tail_is_truncated_and_earlier_records_survive(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([ev(1), ev(2)])
    box.close()
    (_, seg), = Outbox(tmp_path, owner=False).segments()
    whole = Record(3, 0.0, ev(3)).encode()
    with open(seg, "ab") as fh:
        fh.write(whole[: len(whole) // 2])  # a crash in the middle of a write
    box = Outbox(tmp_path)
    assert box.last_seq == 2
    box.append([ev(3)])
    assert [r.id for r in box.records(0)] == ["id-1", "id-2", "id-3"]
    box.close()


def test_damaged_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([ev(1), ev(2), ev(3)])
    box.close()
    (_, seg), = Outbox(tmp_path, owner=False).segments()
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"id-2", b"id-X")  # checksum no longer matches
    seg.write_bytes(b"".join(lines))
    assert [r.id for r in Outbox(tmp_path, owner=False).records(0)] == ["id-1", "id-3"]
    box = Outbox(tmp_path)
    assert box.last_seq == 3
    box.close()


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    with pytest.raises(OutboxError, match="in use by another process"):
        Outbox(tmp_path)
    box.append([ev(1)])
    reader = Outbox(tmp_path, owner=False)  # readers need no lock
    assert [r.id for r in reader.records()] == ["id-1"]
    box.close()
    Outbox(tmp_path).close()


def test_compaction_keeps_undelivered_recent_and_active_segments(tmp_path: Path) -> None:
    box = Outbox(tmp_path, segment_bytes=300)
    for n in range(1, 21):
        box.append([ev(n)])
    segments = box.segments()
    old = segments[2][0] - 1  # cursor at the end of the second segment
    assert box.compact(min_cursor=old, retention=3600) == 0  # too recent
    assert box.compact(min_cursor=old, retention=0) == 2
    assert box.segments() == segments[2:]
    assert box.compact(min_cursor=10**9, retention=0) == len(segments) - 3
    assert len(box.segments()) == 1  # the active segment stays, so the sequence never restarts
    box.close()
    assert Outbox(tmp_path).last_seq == 20


def test_state_round_trip_and_damaged_state(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    assert box.load_state("a b/c") == EndpointState()
    box.save_state("a b/c", EndpointState(cursor=7, delivered=3, last_error="boom"))
    assert box.load_state("a b/c").cursor == 7
    (box.endpoint_path("a b/c") / "state.json").write_text("{not json")
    assert box.load_state("a b/c") == EndpointState()
    box.close()


def test_dead_letters_and_replay_files(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    recs = box.append([ev(1), ev(2), ev(3)])
    for r in recs:
        box.dead_letter("e", r, f"HTTP 500 for {r.id}", attempts=4)
    entries = box.dead_letters("e")
    assert [e["event"]["id"] for e in entries] == ["id-1", "id-2", "id-3"]
    assert entries[0]["error"] == "HTTP 500 for id-1" and entries[0]["attempts"] == 4
    moved = box.replay_dead_letters("e", lambda e: e["event"]["id"] != "id-2")
    assert moved == 2
    assert [e["event"]["id"] for e in box.dead_letters("e")] == ["id-2"]
    (path,) = box.replay_files("e")
    records, _ = read_records(path)
    assert [(r.seq, r.id) for r in records] == [(1, "id-1"), (3, "id-3")]
    box.finish_replay(path)
    assert box.replay_files("e") == []
    assert not any(p.name.endswith(".tmp") for p in box.endpoint_path("e").rglob("*"))
    box.close()



def test_records_are_found_by_seq_without_decoding_the_ones_before(tmp_path: Path) -> None:
    from registry.webhooks.outbox import _peek_seq

    assert _peek_seq(Record(4711, 1.5, ev(1)).encode()) == 4711
    assert _peek_seq(b"garbage\n") == -1
    box = Outbox(tmp_path)
    box.append([ev(n) for n in range(1, 101)])
    assert [r.seq for r in box.records(97)] == [98, 99, 100]
    box.close()
