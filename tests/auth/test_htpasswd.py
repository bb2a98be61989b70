"""htpasswd parsing, constant-time checks, reload on change."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import bcrypt
import pytest

from auth import htpasswd as htpasswd_module
from auth.htpasswd import Htpasswd, parse_htpasswd
from tests.auth.conftest import write_htpasswd


def test_parse_accepts_bcrypt_variants_and_skips_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
    text = b"\n".join([
        b"# comment",
        b"",
        b"a:" + h,
        b"b:$2y$" + h[4:],
        b"c:$2a$" + h[4:],
        b"md5:$apr1$abc$defghijklmnopqrstuvw",
        b"sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        b"nocolon",
        b"a:$2b$04$second-entry-for-a-is-ignored",
    ])
    with caplog.at_level(logging.WARNING, "berth.auth"):
        users = parse_htpasswd(text)
    assert sorted(users.hashes) == ["a", "b", "c"]
    assert users.hashes["a"] == h
    assert "md5" in caplog.text and "$apr1$" not in caplog.text
    assert "{SHA}" not in caplog.text


def test_dummy_hash_uses_the_highest_cost() -> None:
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(6))
    users = parse_htpasswd(b"a:" + h + b"\n")
    assert users.dummy.split(b"$")[2] == b"06"


def test_not_utf8_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_htpasswd(b"\xff\xfe:x")


def test_fingerprint_changes_with_the_entry() -> None:
    a = parse_htpasswd(b"u:" + bcrypt.hashpw(b"1", bcrypt.gensalt(4)))
    b = parse_htpasswd(b"u:" + bcrypt.hashpw(b"2", bcrypt.gensalt(4)))
    assert a.fingerprint("u") and a.fingerprint("u") != b.fingerprint("u")
    assert a.fingerprint("nobody") == ""


async def test_verify(tmp_path: Path) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "secret", "bob": "x" * 80}, prefix=b"$2y$")
    store = Htpasswd(str(path))
    await store.load()
    assert await store.verify("alice", "secret")
    assert await store.verify("alice", "secret")  # cached path
    assert not await store.verify("alice", "Secret")
    assert not await store.verify("alice", "")
    assert not await store.verify("nobody", "secret")
    assert await store.verify("bob", "x" * 80)  # bcrypt reads 72 bytes, as htpasswd does


async def test_unknown_users_also_run_bcrypt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "secret"})
    store = Htpasswd(str(path))
    await store.load()
    seen: list[bytes] = []
    real = htpasswd_module._checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(htpasswd_module, "_checkpw", spy)
    assert not await store.verify("ghost", "secret")
    assert not await store.verify("alice", "wrong")
    assert len(seen) == 2 and seen[0] == (await store.users()).dummy


async def test_every_check_does_the_work_of_the_costliest_hash(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed costs: unknown users, cheap and costly users, right and wrong passwords all run the
    real bcrypt for exactly 2**max_cost rounds, so timing tells neither existence nor cost."""
    path = tmp_path / "h"
    lines = [b"cheap:" + bcrypt.hashpw(b"one", bcrypt.gensalt(4)),
             b"middle:" + bcrypt.hashpw(b"two", bcrypt.gensalt(6)),
             b"costly:" + bcrypt.hashpw(b"three", bcrypt.gensalt(8))]
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = Htpasswd(str(path))
    await store.load()
    rounds: list[int] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        rounds[-1] += 2 ** int(hashed.split(b"$")[2])
        return real(password, hashed)

    monkeypatch.setattr(htpasswd_module.bcrypt, "checkpw", counting)
    outcomes = []
    for user, password in [("ghost", "x"), ("cheap", "wrong"), ("cheap", "one"), ("middle", "two"),
                           ("middle", "bad"), ("costly", "three"), ("costly", "nope"), ("", "")]:
        rounds.append(0)
        outcomes.append(await store.verify(user, password))
        store._cache.clear()  # a remembered success skips bcrypt for the right password only
    assert outcomes == [False, False, True, True, False, True, False, False]
    assert rounds == [2 ** 8] * len(rounds)


async def test_reload_when_the_file_changes(tmp_path: Path) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "one"})
    store = Htpasswd(str(path), interval=0)
    await store.load()
    assert await store.verify("alice", "one")
    write_htpasswd(path, {"alice": "two", "bob": "three"})
    assert not await store.verify("alice", "one")  # the cached success is dropped too
    assert await store.verify("alice", "two")
    assert await store.verify("bob", "three")


async def test_a_broken_reload_keeps_the_old_users(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "one"})
    store = Htpasswd(str(path), interval=0)
    await store.load()
    path.write_bytes(b"\xff\xfe")
    with caplog.at_level(logging.ERROR, "berth.auth"):
        assert await store.verify("alice", "one")
    assert "keeping the previous contents" in caplog.text
    os.unlink(path)
    assert await store.verify("alice", "one")


async def test_checks_are_throttled(tmp_path: Path) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "one"})
    store = Htpasswd(str(path), interval=3600)
    await store.load()
    write_htpasswd(path, {"alice": "two"})
    assert await store.verify("alice", "one")


async def test_missing_file_fails_the_first_load(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await Htpasswd(str(tmp_path / "missing")).load()


async def test_concurrent_checks(tmp_path: Path) -> None:
    path = write_htpasswd(tmp_path / "h", {f"u{i}": f"p{i}" for i in range(8)})
    store = Htpasswd(str(path), interval=0)
    await store.load()
    results = await asyncio.gather(*(store.verify(f"u{i}", f"p{i % 4}") for i in range(8)))
    assert results == [i < 4 for i in range(8)]
