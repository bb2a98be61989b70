"""The storage driver contract: one suite, run unchanged over every backend.

It checks the guarantees listed in :mod:`storage_backends.base`. A backend's
test module hands it a driver factory in a few lines::

    class TestMyDriver(DriverContract):
        @pytest.fixture
        def driver_factory(self, tmp_path):
            return lambda: MyDriver(root=tmp_path)

Every call of the factory must return a *new* driver instance over the *same*
storage (as another process would open it); a backend that cannot share state
between instances (in-memory) may return the same instance. Each test gets
fresh, empty storage.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise

import pytest

from storage_backends.base import (
    FileInfo,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
)

DriverFactory = Callable[[], StorageDriver]

MiB = 1 << 20
LARGE = 12 * MiB
SMALL_WRITE = 64 * 1024

INVALID_PATHS = [
    "", "a", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/..", "/.", "/a/..", "/../etc/passwd",
    "/a b", "/a\x00b", "/a\\b", "/a:b", "/a*b", "/a?b", "/a%2fb", "/\u00e9", "/a\nb", "/a\tb", "/a~b",
]

PRIMITIVES = (
    "_get_content", "_put_content", "_reader", "_writer", "_stat", "_list", "_move", "_delete", "_walk",
    "_redirect_url", "_local_path",
)


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes of ``size``."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


async def read_all(driver: StorageDriver, path: str, offset: int = 0, length: int | None = None) -> bytes:
    """Everything ``driver.reader`` yields."""
    return b"".join([chunk async for chunk in driver.reader(path, offset, length)])


async def digest_of(driver: StorageDriver, path: str) -> tuple[str, int]:
    """sha256 and size of an object, streamed."""
    h = hashlib.sha256()
    size = 0
    async for chunk in driver.reader(path):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


async def walk_all(driver: StorageDriver, path: str) -> list[FileInfo]:
    """Everything ``driver.walk`` yields."""
    return [info async for info in driver.walk(path)]


async def listing_or_empty(driver: StorageDriver, path: str) -> list[str]:
    """``list(path)``, or [] when the directory does not exist."""
    try:
        return await driver.list(path)
    except PathNotFound:
        return []


async def walk_or_empty(driver: StorageDriver, path: str) -> list[str]:
    """Paths ``walk(path)`` yields, or [] when the directory does not exist."""
    try:
        return [info.path for info in await walk_all(driver, path)]
    except PathNotFound:
        return []


async def write_in_pieces(writer: object, data: bytes, piece: int = SMALL_WRITE) -> None:
    """Feed ``data`` to a FileWriter in pieces of ``piece`` bytes."""
    for start in range(0, len(data), piece):
        await writer.write(data[start:start + piece])  # type: ignore[attr-defined]


class DriverContract:
    """The contract suite; subclasses provide the ``driver_factory`` fixture."""

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        """Override: return a callable that opens a driver over this test's storage."""
        raise NotImplementedError("a backend's test class must provide the driver_factory fixture")

    @pytest.fixture
    async def driver(self, driver_factory: DriverFactory) -> AsyncIterator[StorageDriver]:
        """A driver over fresh storage."""
        drv = driver_factory()
        yield drv
        await drv.close()

    @pytest.fixture
    async def reopen(self, driver_factory: DriverFactory, driver: StorageDriver) -> AsyncIterator[DriverFactory]:
        """Opens more drivers over the same storage (like other processes); closes them afterwards."""
        opened: list[StorageDriver] = []

        def open_again() -> StorageDriver:
            drv = driver_factory()
            if drv is not driver:
                opened.append(drv)
            return drv

        yield open_again
        for drv in opened:
            await drv.close()

    # ---- whole objects ----
    async def test_put_then_get(self, driver: StorageDriver) -> None:
        data = pattern(70_000)
        await driver.put_content("/a/b/c", data)
        assert await driver.get_content("/a/b/c") == data

    async def test_put_empty_and_binary(self, driver: StorageDriver) -> None:
        await driver.put_content("/empty", b"")
        assert await driver.get_content("/empty") == b""
        blob = bytes(range(256)) * 3
        await driver.put_content("/bin", blob)
        assert await driver.get_content("/bin") == blob

    async def test_get_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFound):
            await driver.get_content("/nope")
        await driver.put_content("/d/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content("/d/other")
        with pytest.raises(PathNotFound):
            await driver.get_content("/d")  # a directory is not content

    async def test_overwrite_replaces_whole_value(self, driver: StorageDriver) -> None:
        await driver.put_content("/o", b"first value, rather long" * 100)
        await driver.put_content("/o", b"second")
        assert await driver.get_content("/o") == b"second"
        assert (await driver.stat("/o")).size == len(b"second")

    async def test_overwrite_is_atomic_for_readers(self, driver: StorageDriver) -> None:
        old, new = pattern(600_000, 1), pattern(400_000, 2)
        await driver.put_content("/atomic", old)
        seen: list[bytes] = []

        async def reader() -> None:
            for _ in range(10):
                seen.append(await driver.get_content("/atomic"))
                await asyncio.sleep(0)

        await asyncio.gather(reader(), driver.put_content("/atomic", new), reader())
        assert all(value in (old, new) for value in seen)
        assert await driver.get_content("/atomic") == new

    async def test_concurrent_puts_leave_one_whole_value(self, driver: StorageDriver) -> None:
        values = [pattern(300_000 + i * 1000, seed=i) for i in range(8)]
        await asyncio.gather(*(driver.put_content("/race/x", v) for v in values))
        assert await driver.get_content("/race/x") in values
        assert (await driver.stat("/race/x")).size in {len(v) for v in values}

    async def test_exists(self, driver: StorageDriver) -> None:
        assert not await driver.exists("/e/x")
        await driver.put_content("/e/x", b"1")
        assert await driver.exists("/e/x")
        assert await driver.exists("/e")

    # ---- reader ----
    async def test_reader_whole_and_ranges(self, driver: StorageDriver) -> None:
        data = pattern(2 * MiB + 12_345)
        await driver.put_content("/r/blob", data)
        assert await read_all(driver, "/r/blob") == data
        assert await read_all(driver, "/r/blob", 1000) == data[1000:]
        assert await read_all(driver, "/r/blob", 1000, 5000) == data[1000:6000]
        assert await read_all(driver, "/r/blob", 0, 1) == data[:1]
        assert await read_all(driver, "/r/blob", MiB, MiB + 7) == data[MiB:2 * MiB + 7]
        assert await read_all(driver, "/r/blob", len(data) - 10, 1000) == data[-10:]  # length past the end
        assert await read_all(driver, "/r/blob", 5, 0) == b""

    async def test_reader_at_size_is_empty(self, driver: StorageDriver) -> None:
        data = pattern(4096)
        await driver.put_content("/r/f", data)
        assert await read_all(driver, "/r/f", len(data)) == b""
        assert await read_all(driver, "/r/f", len(data), 10) == b""
        await driver.put_content("/r/empty", b"")
        assert await read_all(driver, "/r/empty") == b""
        assert await read_all(driver, "/r/empty", 0, 5) == b""

    async def test_reader_past_size_is_invalid_offset(self, driver: StorageDriver) -> None:
        await driver.put_content("/r/f", b"0123456789")
        with pytest.raises(InvalidOffset):
            await read_all(driver, "/r/f", 11)
        with pytest.raises(InvalidOffset):
            await read_all(driver, "/r/f", 1000, 5)
        with pytest.raises(InvalidOffset):
            await read_all(driver, "/r/f", -1)
        with pytest.raises(InvalidOffset):
            await read_all(driver, "/r/f", 0, -1)

    async def test_reader_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFound):
            await read_all(driver, "/r/missing")
        with pytest.raises(PathNotFound):
            await read_all(driver, "/r/missing", 3)

    async def test_reader_stops_early(self, driver: StorageDriver) -> None:
        data = pattern(3 * MiB)
        await driver.put_content("/r/big", data)
        it = driver.reader("/r/big")
        first = await it.__anext__()  # type: ignore[attr-defined]
        assert data.startswith(first) and first
        await it.aclose()  # type: ignore[attr-defined]
        assert await read_all(driver, "/r/big", 3 * MiB - 3) == data[-3:]

    # ---- writer ----
    async def test_writer_commit_makes_visible(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/obj")
        assert w.size == 0
        await w.write(b"hello ")
        await w.write(b"world")
        assert w.size == 11
        with pytest.raises(PathNotFound):
            await driver.stat("/w/obj")
        await w.commit()
        assert await driver.get_content("/w/obj") == b"hello world"
        assert (await driver.stat("/w/obj")).size == 11

    async def test_writer_not_visible_before_commit(self, driver: StorageDriver) -> None:
        await driver.put_content("/w/sibling", b"s")
        w = await driver.writer("/w/pending")
        await write_in_pieces(w, pattern(300_000))
        for check in (driver.stat, driver.get_content):
            with pytest.raises(PathNotFound):
                await check("/w/pending")
        with pytest.raises(PathNotFound):
            await read_all(driver, "/w/pending")
        assert await driver.list("/w") == ["/w/sibling"]
        assert await walk_or_empty(driver, "/w") == ["/w/sibling"]
        await w.close()
        with pytest.raises(PathNotFound):
            await driver.stat("/w/pending")
        assert await driver.list("/w") == ["/w/sibling"]
        assert await walk_or_empty(driver, "/w") == ["/w/sibling"]
        assert [i.path for i in await walk_all(driver, "/")] == ["/w/sibling"]

    async def test_writer_empty_commit(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/zero")
        await w.commit()
        assert await driver.get_content("/w/zero") == b""
        assert (await driver.stat("/w/zero")).size == 0

    async def test_writer_close_then_append(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/resume")
        await w.write(b"part one;")
        await w.close()
        with pytest.raises(PathNotFound):
            await driver.stat("/w/resume")
        w2 = await driver.writer("/w/resume", append=True)
        assert w2.size == len(b"part one;")
        await w2.write(b"part two")
        assert w2.size == len(b"part one;part two")
        await w2.commit()
        assert await driver.get_content("/w/resume") == b"part one;part two"

    async def test_writer_append_from_another_instance(self, driver: StorageDriver, reopen: DriverFactory) -> None:
        first = pattern(100_003, 7)
        second = pattern(77_777, 8)
        w = await driver.writer("/w/shared")
        await write_in_pieces(w, first, 10_000)
        await w.close()
        other = reopen()
        w2 = await other.writer("/w/shared", append=True)
        assert w2.size == len(first)
        await write_in_pieces(w2, second, 9_999)
        await w2.close()
        third = reopen()
        w3 = await third.writer("/w/shared", append=True)
        assert w3.size == len(first) + len(second)
        await w3.commit()
        assert await driver.get_content("/w/shared") == first + second

    async def test_writer_many_sessions(self, driver: StorageDriver, reopen: DriverFactory) -> None:
        expected = b""
        for i in range(6):
            drv = driver if i % 2 == 0 else reopen()
            w = await drv.writer("/w/sessions", append=i > 0)
            assert w.size == len(expected)
            piece = pattern(1 + i * 333, i)
            await w.write(piece)
            expected += piece
            await w.close()
        w = await driver.writer("/w/sessions", append=True)
        assert w.size == len(expected)
        await w.commit()
        assert await driver.get_content("/w/sessions") == expected

    async def test_writer_cancel_discards(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/gone")
        await w.write(b"temporary")
        await w.close()
        w2 = await driver.writer("/w/gone", append=True)
        await w2.write(b" more")
        await w2.cancel()
        assert not await driver.exists("/w/gone")
        w3 = await driver.writer("/w/gone", append=True)
        assert w3.size == 0
        await w3.write(b"fresh")
        await w3.commit()
        assert await driver.get_content("/w/gone") == b"fresh"

    async def test_writer_cancel_keeps_committed_object(self, driver: StorageDriver) -> None:
        await driver.put_content("/w/kept", b"original")
        w = await driver.writer("/w/kept", append=True)
        await w.write(b" plus more")
        await w.cancel()
        assert await driver.get_content("/w/kept") == b"original"

    async def test_writer_append_continues_committed_object(self, driver: StorageDriver) -> None:
        await driver.put_content("/w/log", b"abc")
        w = await driver.writer("/w/log", append=True)
        assert w.size == 3
        await w.write(b"def")
        await w.commit()
        assert await driver.get_content("/w/log") == b"abcdef"

    async def test_writer_append_continues_large_committed_object(self, driver: StorageDriver) -> None:
        first, second = pattern(6 * MiB + 17, 3), pattern(MiB + 5, 4)
        w = await driver.writer("/w/large-log")
        await write_in_pieces(w, first, 256 * 1024)
        await w.commit()
        w2 = await driver.writer("/w/large-log", append=True)
        assert w2.size == len(first)
        await w2.write(second)
        await w2.commit()
        whole = first + second
        assert await digest_of(driver, "/w/large-log") == (hashlib.sha256(whole).hexdigest(), len(whole))

    async def test_writer_new_discards_unfinished(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/restart")
        await w.write(b"stale bytes")
        await w.close()
        w2 = await driver.writer("/w/restart")
        assert w2.size == 0
        await w2.write(b"new")
        await w2.close()
        w3 = await driver.writer("/w/restart", append=True)
        assert w3.size == 3
        await w3.commit()
        assert await driver.get_content("/w/restart") == b"new"

    async def test_writer_opened_new_discards_at_once(self, driver: StorageDriver, reopen: DriverFactory) -> None:
        w = await driver.writer("/w/reset")
        await w.write(b"stale bytes")
        await w.close()
        await driver.writer("/w/reset")  # opened new, then abandoned (e.g. the client went away)
        w2 = await reopen().writer("/w/reset", append=True)
        assert w2.size == 0
        await w2.write(b"only")
        await w2.commit()
        assert await driver.get_content("/w/reset") == b"only"

    async def test_writer_commit_replaces_existing(self, driver: StorageDriver) -> None:
        await driver.put_content("/w/replace", b"old old old")
        w = await driver.writer("/w/replace")
        await w.write(b"new")
        await w.commit()
        assert await driver.get_content("/w/replace") == b"new"

    async def test_writer_large_streamed_in_small_writes(self, driver: StorageDriver) -> None:
        data = pattern(LARGE, 11)
        w = await driver.writer("/big/blob")
        await write_in_pieces(w, data, SMALL_WRITE)
        assert w.size == LARGE
        with pytest.raises(PathNotFound):
            await driver.stat("/big/blob")
        await w.commit()
        assert (await driver.stat("/big/blob")).size == LARGE
        assert await digest_of(driver, "/big/blob") == (hashlib.sha256(data).hexdigest(), LARGE)
        assert await read_all(driver, "/big/blob", 5 * MiB - 3, 10) == data[5 * MiB - 3:5 * MiB + 7]

    async def test_writer_large_resumed_across_instances(self, driver: StorageDriver, reopen: DriverFactory) -> None:
        data = pattern(LARGE, 12)
        cuts = [0, 3 * MiB + 1, 7 * MiB + 12_345, 7 * MiB + 20_000, LARGE]
        for i, (start, end) in enumerate(pairwise(cuts)):
            drv = reopen()
            w = await drv.writer("/big/resumed", append=i > 0)
            assert w.size == start
            await write_in_pieces(w, data[start:end], 100_000)
            assert w.size == end
            if end == LARGE:
                await w.commit()
            else:
                await w.close()
        assert await digest_of(driver, "/big/resumed") == (hashlib.sha256(data).hexdigest(), LARGE)
        assert [i.path for i in await walk_all(driver, "/big")] == ["/big/resumed"]

    async def test_writer_closed_rejects_writes(self, driver: StorageDriver) -> None:
        w = await driver.writer("/w/closed")
        await w.write(b"x")
        await w.close()
        with pytest.raises(ValueError):
            await w.write(b"y")
        w2 = await driver.writer("/w/closed", append=True)
        await w2.commit()
        assert await driver.get_content("/w/closed") == b"x"

    # ---- stat ----
    async def test_stat_file_and_directory(self, driver: StorageDriver) -> None:
        before = time.time()
        await driver.put_content("/s/dir/file", b"12345")
        info = await driver.stat("/s/dir/file")
        assert info.path == "/s/dir/file"
        assert info.size == 5 and not info.is_dir
        assert before - 300 < info.modtime < time.time() + 300
        for d in ("/s", "/s/dir"):
            dinfo = await driver.stat(d)
            assert dinfo.is_dir and dinfo.path == d
        assert (await driver.stat("/")).is_dir

    async def test_stat_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/s/x", b"1")
        for missing in ("/nothing", "/s/y", "/s/x/deeper", "/s/x-other"):
            with pytest.raises(PathNotFound):
                await driver.stat(missing)

    # ---- list ----
    async def test_list_direct_children_sorted(self, driver: StorageDriver) -> None:
        for p in ("/l/b/c", "/l/b/d/e", "/l/a", "/l/z", "/l/b-side", "/other/x"):
            await driver.put_content(p, b"v")
        assert await driver.list("/l") == ["/l/a", "/l/b", "/l/b-side", "/l/z"]
        assert await driver.list("/l/b") == ["/l/b/c", "/l/b/d"]
        assert await driver.list("/l/b/d") == ["/l/b/d/e"]
        assert await driver.list("/") == ["/l", "/other"]

    async def test_list_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/l/file", b"v")
        for missing in ("/missing", "/l/missing", "/l/file"):
            with pytest.raises(PathNotFound):
                await driver.list(missing)

    # ---- move ----
    async def test_move_file(self, driver: StorageDriver) -> None:
        data = pattern(123_456)
        await driver.put_content("/m/src/file", data)
        await driver.move("/m/src/file", "/m/dst/deep/file")
        assert await driver.get_content("/m/dst/deep/file") == data
        with pytest.raises(PathNotFound):
            await driver.stat("/m/src/file")
        assert "/m/src/file" not in await listing_or_empty(driver, "/m/src")

    async def test_move_replaces_destination(self, driver: StorageDriver) -> None:
        await driver.put_content("/m/a", b"new content")
        await driver.put_content("/m/b", b"old content that is longer")
        await driver.move("/m/a", "/m/b")
        assert await driver.get_content("/m/b") == b"new content"
        assert not await driver.exists("/m/a")
        assert await driver.list("/m") == ["/m/b"]

    async def test_move_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFound):
            await driver.move("/m/none", "/m/dest")
        assert not await driver.exists("/m/dest")

    async def test_move_large(self, driver: StorageDriver) -> None:
        data = pattern(LARGE, 21)
        w = await driver.writer("/m/large")
        await write_in_pieces(w, data, MiB)
        await w.commit()
        await driver.move("/m/large", "/m/moved/large")
        assert await digest_of(driver, "/m/moved/large") == (hashlib.sha256(data).hexdigest(), LARGE)
        assert not await driver.exists("/m/large")

    # ---- delete ----
    async def test_delete_file(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/one", b"1")
        await driver.put_content("/d/two", b"2")
        await driver.delete("/d/one")
        assert not await driver.exists("/d/one")
        assert await driver.get_content("/d/two") == b"2"
        assert await driver.list("/d") == ["/d/two"]

    async def test_delete_tree(self, driver: StorageDriver) -> None:
        tree = ["/t/a/1", "/t/a/b/2", "/t/a/b/c/3", "/t/a/b/c/d/4"]
        survivors = ["/t/a-b", "/t/ab", "/t/a.x/5", "/t/z"]
        for p in tree + survivors:
            await driver.put_content(p, p.encode())
        await driver.delete("/t/a")
        for p in tree + ["/t/a", "/t/a/b", "/t/a/b/c"]:
            assert not await driver.exists(p), p
        for p in survivors:
            assert await driver.get_content(p) == p.encode()
        assert await driver.list("/t") == ["/t/a-b", "/t/a.x", "/t/ab", "/t/z"]
        assert sorted(await walk_or_empty(driver, "/t")) == sorted(survivors)

    async def test_delete_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/x", b"1")
        for missing in ("/d/y", "/nothing", "/d/x/below"):
            with pytest.raises(PathNotFound):
                await driver.delete(missing)
        assert await driver.get_content("/d/x") == b"1"

    async def test_delete_then_recreate(self, driver: StorageDriver) -> None:
        await driver.put_content("/d/re/x", b"1")
        await driver.delete("/d/re")
        await driver.put_content("/d/re/y", b"2")
        assert await driver.list("/d/re") == ["/d/re/y"]

    # ---- walk ----
    async def test_walk_every_file_below(self, driver: StorageDriver) -> None:
        files = {"/k/a": 1, "/k/b/c": 22, "/k/b/d/e": 333, "/k/b/d/f": 0, "/k/x/y/z/w": 5}
        for p, size in files.items():
            await driver.put_content(p, b"w" * size)
        await driver.put_content("/outside", b"o")
        infos = await walk_all(driver, "/k")
        assert sorted((i.path, i.size, i.is_dir) for i in infos) == sorted((p, s, False) for p, s in files.items())
        assert all(i.modtime > 0 for i in infos)
        sub = await walk_all(driver, "/k/b")
        assert sorted(i.path for i in sub) == ["/k/b/c", "/k/b/d/e", "/k/b/d/f"]
        everything = await walk_all(driver, "/")
        assert sorted(i.path for i in everything) == sorted([*files, "/outside"])

    async def test_walk_missing_is_path_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("/k/file", b"1")
        for missing in ("/no/such/dir", "/k/none", "/k/file"):
            with pytest.raises(PathNotFound):
                await walk_all(driver, missing)

    async def test_find_dirs_holding_markers(self, driver: StorageDriver) -> None:
        for p in ("/r/a/_manifests/x", "/r/a/b/_layers/y", "/r/a/b/c/_layers/z", "/r/c/_uploads/u",
                  "/r/_hidden/d/_manifests/q", "/r/e/f/g/_manifests/tags/t/link", "/other/h/_manifests/x"):
            await driver.put_content(p, b"1")
        found = await driver.find_dirs("/r", ("_manifests", "_layers"))
        assert found == ["a", "a/b", "a/b/c", "e/f/g"]
        assert await driver.find_dirs("/r", ("_uploads",)) == ["c"]
        assert await driver.find_dirs("/no/such", ("_manifests",)) == []
        with pytest.raises(InvalidPath):
            await driver.find_dirs("/r/../x", ("_manifests",))

    # ---- paths ----
    @pytest.mark.parametrize("bad", INVALID_PATHS, ids=repr)
    async def test_invalid_paths_rejected_before_backend(self, driver: StorageDriver, bad: str) -> None:
        reached: list[str] = []
        originals = {name: getattr(driver, name) for name in PRIMITIVES}

        def tripwire(name: str) -> Callable[..., object]:
            def called(*args: object, **kwargs: object) -> object:
                reached.append(name)
                return originals[name](*args, **kwargs)

            return called

        for name in PRIMITIVES:
            setattr(driver, name, tripwire(name))
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: driver.get_content(bad),
                lambda: driver.put_content(bad, b"x"),
                lambda: read_all(driver, bad),
                lambda: driver.writer(bad),
                lambda: driver.writer(bad, append=True),
                lambda: driver.stat(bad),
                lambda: driver.list(bad),
                lambda: driver.move(bad, "/ok"),
                lambda: driver.move("/ok", bad),
                lambda: driver.delete(bad),
                lambda: walk_all(driver, bad),
                lambda: driver.redirect_url(bad),
                lambda: driver.exists(bad),
            ]
            for call in calls:
                with pytest.raises(InvalidPath):
                    await call()
            with pytest.raises(InvalidPath):
                driver.local_path(bad)
        finally:
            for name in PRIMITIVES:
                delattr(driver, name)
        assert reached == []
        assert await walk_or_empty(driver, "/") == []

    # ---- misc ----
    async def test_health(self, driver: StorageDriver) -> None:
        await driver.health()

    async def test_redirect_url_is_optional(self, driver: StorageDriver) -> None:
        await driver.put_content("/u/x", b"1")
        url = await driver.redirect_url("/u/x")
        assert url is None or url.startswith(("http://", "https://"))



__all__ = [
    "INVALID_PATHS",
    "LARGE",
    "DriverContract",
    "DriverFactory",
    "MiB",
    "digest_of",
    "listing_or_empty",
    "pattern",
    "read_all",
    "walk_all",
    "walk_or_empty",
    "write_in_pieces",
]
