"""The client verbs against real registries (reference registry, and Berth when it serves)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from registry.client.store import Store
from tests.client.conftest import ROOT, Images, berth, load_and_tag, ok
from tests.client.faults import FaultProxy
from tests.servers import Server, free_port


def _pushed(registry: Server, repo: str, images: Images, tag: str = "v1") -> str:
    ref = f"{registry.addr}/{repo}:{tag}"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    ok("push", ref)
    return ref


def _store_blobs(home: Path) -> set[str]:
    root = home / "blobs" / "sha256"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_push_pull_roundtrip_keeps_digests(registry: Server, repo: str, images: Images, berth_env: Path) -> None:
    ref = f"{registry.addr}/{repo}:v1"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    pushed = ok("push", ref).out
    digest = pushed.split("digest: ")[1].split()[0]
    ok("rmi", ref)
    assert _store_blobs(berth_env) == set()
    pulled = ok("pull", ref).out
    assert f"Digest: {digest}" in pulled
    assert "Downloaded newer image" in pulled
    again = ok("pull", ref).out
    assert "Image is up to date" in again
    listing = ok("images", "--digests").out
    assert digest in listing and images.small.config.digest.split(":")[1][:12] in listing
    store = Store()
    image = store.get(ref)
    for blob in store.reachable([image.descriptor]):
        assert store.verify_blob(blob)
    info = json.loads(ok("inspect", ref).out)
    assert info["Digest"] == digest
    assert info["Config"]["Digest"] == images.small.config.digest
    assert info["Platforms"] == ["linux/amd64"]
    assert info["Size"] == images.small.config.size + sum(layer["Size"] for layer in info["Layers"])
    assert [layer["Digest"] for layer in info["Layers"]] == images.small.diff_ids  # uncompressed: digest == diff_id


def test_index_platforms(registry: Server, repo: str, images: Images) -> None:
    ref = f"{registry.addr}/{repo}:multi"
    load_and_tag(images.multi_oci_tar, ref)
    ok("push", ref)
    info = json.loads(ok("inspect", ref).out)
    assert info["Digest"] == images.multi.manifest_digest
    assert info["Platforms"] == ["linux/amd64", "linux/arm64"]
    ok("rmi", ref)

    assert f"Digest: {images.multi.images['amd64'].manifest_digest}" in ok("pull", ref, "--platform", "linux/amd64").out
    assert f"Digest: {images.multi.images['arm64'].manifest_digest}" in ok("pull", ref, "--platform", "linux/arm64").out
    missing = berth("pull", ref, "--platform", "linux/s390x")
    assert missing.code == 7
    assert "no such platform" in missing.err and "linux/amd64, linux/arm64" in missing.err
    assert "Traceback" not in missing.err

    ok("pull", ref, "--all-platforms")
    copy_ref = f"{registry.addr}/{repo}-again:multi"
    ok("tag", ref, copy_ref)
    assert images.multi.manifest_digest in ok("push", copy_ref).out


def test_push_skips_existing_layers_and_mounts_across_repositories(registry: Server, repo: str, images: Images) -> None:
    ref = _pushed(registry, repo, images)
    again = berth("push", ref)
    assert again.code == 0 and again.err.count("layer already exists") == 4
    other = f"{registry.addr}/{repo}-mounted:v1"
    ok("tag", ref, other)
    mounted = ok("push", other)
    assert mounted.err.count(f"mounted from {repo}") == 4, mounted.err


def test_chunked_upload(registry: Server, repo: str, images: Images) -> None:
    ref = f"{registry.addr}/{repo}:chunks"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    pushed = ok("push", ref, "--chunk-size", "64k").out
    ok("rmi", ref)
    pulled = ok("pull", ref).out
    assert pushed.split("digest: ")[1].split()[0] in pulled


def test_tags_and_delete(registry: Server, repo: str, images: Images) -> None:
    ref = _pushed(registry, repo, images, "one")
    ok("tag", ref, f"{registry.addr}/{repo}:two")
    ok("push", f"{registry.addr}/{repo}:two")
    load_and_tag(images.other.docker_archive, f"{registry.addr}/{repo}:three")  # type: ignore[arg-type]
    ok("push", f"{registry.addr}/{repo}:three")
    assert sorted(ok("tags", f"{registry.addr}/{repo}").out.split()) == ["one", "three", "two"]

    deleted = ok("delete", f"{registry.addr}/{repo}:three").out
    assert "Deleted" in deleted
    gone = berth("inspect", f"{registry.addr}/{repo}:three")
    assert gone.code == 4 and f"{repo}:three" in gone.err

    digest = json.loads(ok("inspect", ref).out)["Digest"]
    ok("delete", f"{registry.addr}/{repo}@{digest}")
    assert berth("pull", f"{registry.addr}/{repo}@{digest}").code == 4


def test_copy_between_registries_keeps_digests(registry: Server, reference_registry: Server, repo: str, images: Images) -> None:
    src = _pushed(registry, repo, images)
    digest = json.loads(ok("inspect", src).out)["Digest"]
    dst = f"{reference_registry.addr}/{repo}-copied:v1"
    copied = ok("copy", src, dst).out
    assert digest in copied
    assert json.loads(ok("inspect", dst).out)["Digest"] == digest
    back = f"{registry.addr}/{repo}-back:v1"
    assert digest in ok("copy", dst, back, "--chunk-size", "100k").out

    same = ok("copy", src, f"{registry.addr}/{repo}-same:v1")
    assert same.err.count("mounted from") == 4, same.err

    multi = f"{registry.addr}/{repo}:multi"
    load_and_tag(images.multi_oci_tar, multi)
    ok("push", multi)
    all_dst = f"{reference_registry.addr}/{repo}-all:multi"
    ok("copy", multi, all_dst, "--all-platforms")
    assert json.loads(ok("inspect", all_dst).out)["Digest"] == images.multi.manifest_digest
    one_dst = f"{reference_registry.addr}/{repo}-one:multi"
    ok("copy", multi, one_dst, "--platform", "linux/arm64")
    assert json.loads(ok("inspect", one_dst).out)["Digest"] == images.multi.images["arm64"].manifest_digest


def test_errors_are_one_line_with_exit_codes(registry: Server, repo: str) -> None:
    unknown = berth("pull", f"{registry.addr}/{repo}:nope")
    assert unknown.code == 4
    assert unknown.err.strip() == f"berth: manifest unknown: {registry.addr}/{repo}:nope not found in {registry.addr}"
    refused = berth("pull", f"127.0.0.1:{free_port()}/x/y:1")
    assert refused.code == 6 and "connection refused" in refused.err
    bad = berth("pull", "UPPER/Case")
    assert bad.code == 2 and "invalid reference" in bad.err
    local = berth("push", f"{registry.addr}/{repo}:not-local")
    assert local.code == 4 and "not in the local store" in local.err
    for result in (unknown, refused, bad, local):
        assert len(result.err.strip().splitlines()) == 1


def test_interrupted_download_resumes_with_range(registry: Server, repo: str, images: Images, berth_env: Path) -> None:
    ref = _pushed(registry, repo, images)
    ok("rmi", ref)
    proxy = FaultProxy(registry.url, "cut").start()
    try:
        via = ref.replace(registry.addr, proxy.addr)
        ok("pull", via)
    finally:
        proxy.stop()
    ranged = [s for s in proxy.seen if s.range]
    # Every blob was cut once; those whose first half had reached the client resumed from there.
    assert ranged, "\n".join(map(str, proxy.seen))
    assert all(int(s.range.split("=")[1].rstrip("-")) > 0 for s in ranged if s.range)
    store = Store()
    for blob in store.reachable([store.get(via).descriptor]):
        assert store.verify_blob(blob)


def test_digest_mismatch_stores_nothing(registry: Server, repo: str, images: Images, berth_env: Path) -> None:
    ref = _pushed(registry, repo, images)
    ok("rmi", ref)
    proxy = FaultProxy(registry.url, "corrupt").start()
    try:
        result = berth("pull", ref.replace(registry.addr, proxy.addr))
    finally:
        proxy.stop()
    assert result.code == 5
    assert "digest mismatch" in result.err and "nothing was stored" in result.err
    assert _store_blobs(berth_env) == set()
    assert ok("images", "-q").out == ""


def test_concurrent_commands_share_the_store(registry: Server, repo: str, images: Images, berth_env: Path) -> None:
    ref = _pushed(registry, repo, images)
    multi = f"{registry.addr}/{repo}:multi"
    load_and_tag(images.multi_oci_tar, multi)
    ok("push", multi)
    ok("rmi", ref, multi)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argvs = [["pull", ref], ["pull", multi, "--all-platforms"], ["pull", ref], ["pull", multi]]
    procs = [subprocess.Popen([sys.executable, "-m", "registry.client.cli", *a], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for a in argvs]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert b"downloading" in err or b"already exists" in err  # plain progress lines off a terminal
    store = Store()
    names = {i.name for i in store.images()}
    assert names == {f"{registry.addr}/{repo}:v1", f"{registry.addr}/{repo}:multi"}
    for blob in store.reachable([i.descriptor for i in store.images()]):
        assert store.verify_blob(blob)
    assert not list((berth_env / ".berth" / "tmp").glob("*.partial"))
    ok("rmi", multi)
    ok("rmi", ref)
    assert _store_blobs(berth_env) == set()


def test_save_stdout_and_load_stdin(registry: Server, repo: str, images: Images, tmp_path: Path) -> None:
    ref = _pushed(registry, repo, images)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    saved = subprocess.run([sys.executable, "-m", "registry.client.cli", "save", "-o", "-", "--gzip", ref],
                           env=env, capture_output=True, timeout=60, check=True).stdout
    assert saved[:2] == b"\x1f\x8b"
    ok("rmi", ref)
    other_home = dict(env, BERTH_HOME=str(tmp_path / "other-home"))
    loaded = subprocess.run([sys.executable, "-m", "registry.client.cli", "load", "-i", "-"], input=saved,
                            env=other_home, capture_output=True, timeout=60, check=True)
    assert loaded.stdout.decode().strip() == f"Loaded image: {ref}"
    raw = subprocess.run([sys.executable, "-m", "registry.client.cli", "inspect", "--raw", ref],
                         env=env, capture_output=True, timeout=60, check=True).stdout
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    pushed = subprocess.run([sys.executable, "-m", "registry.client.cli", "push", ref], env=other_home,
                            capture_output=True, timeout=60, check=True).stdout.decode()
    assert digest in pushed
