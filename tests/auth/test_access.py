"""required_access and the scope grammar."""

from __future__ import annotations

import pytest

from auth.access import (
    CATALOG_ACCESS,
    Access,
    covers,
    is_grantable,
    merge,
    parse_scope,
    parse_scopes,
    required_access,
)

D = "sha256:" + "a" * 64


def scopes(method: str, path: str, query: dict[str, str] | None = None) -> list[str]:
    return [a.scope for a in required_access(method, path, query or {})]


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/v2/", []),
    ("GET", "/v2", []),
    ("GET", "/v2/_catalog", ["registry:catalog:*"]),
    ("GET", "/v2/a/b/tags/list", ["repository:a/b:pull"]),
    ("GET", "/v2/a/manifests/latest", ["repository:a:pull"]),
    ("HEAD", "/v2/a/manifests/latest", ["repository:a:pull"]),
    ("PUT", "/v2/a/manifests/latest", ["repository:a:push"]),
    ("DELETE", "/v2/a/manifests/" + D, ["repository:a:delete"]),
    ("GET", "/v2/a/blobs/" + D, ["repository:a:pull"]),
    ("DELETE", "/v2/a/blobs/" + D, ["repository:a:delete"]),
    ("POST", "/v2/a/blobs/uploads/", ["repository:a:push"]),
    ("PATCH", "/v2/a/blobs/uploads/abc", ["repository:a:push"]),
    ("PUT", "/v2/a/blobs/uploads/abc", ["repository:a:push"]),
    ("GET", "/v2/a/blobs/uploads/abc", ["repository:a:push"]),
    ("DELETE", "/v2/a/blobs/uploads/abc", ["repository:a:push"]),
    ("GET", "/v2/a/referrers/" + D, ["repository:a:pull"]),
    ("get", "/v2/a/tags/list", ["repository:a:pull"]),
    ("OPTIONS", "/v2/a/tags/list", ["repository:a:pull"]),
    ("TRACE", "/v2/a/tags/list", ["repository:a:push"]),
    ("GET", "/v2/no/such/endpoint", []),
    ("GET", "/elsewhere", []),
])
def test_required_access(method: str, path: str, expected: list[str]) -> None:
    assert scopes(method, path) == expected


def test_mount_needs_pull_on_the_source() -> None:
    assert scopes("POST", "/v2/dst/blobs/uploads/", {"mount": D, "from": "src/x"}) == [
        "repository:dst:push", "repository:src/x:pull"]


def test_mount_without_from_needs_push_only() -> None:
    assert scopes("POST", "/v2/dst/blobs/uploads/", {"mount": D}) == ["repository:dst:push"]


def test_from_without_mount_is_ignored() -> None:
    assert scopes("POST", "/v2/dst/blobs/uploads/", {"from": "src"}) == ["repository:dst:push"]


def test_mount_from_itself_merges() -> None:
    assert scopes("POST", "/v2/a/blobs/uploads/", {"mount": D, "from": "a"}) == ["repository:a:pull,push"]


def test_names_are_taken_raw_for_the_handler_and_policy_to_refuse() -> None:
    assert scopes("GET", "/v2/Foo/../bar/tags/list") == ["repository:Foo/../bar:pull"]


@pytest.mark.parametrize("text,expected", [
    ("repository:foo:pull", Access("repository", "foo", ("pull",))),
    ("repository:foo/bar:push,pull", Access("repository", "foo/bar", ("pull", "push"))),
    ("repository:foo:pull,pull,,", Access("repository", "foo", ("pull",))),
    ("registry:catalog:*", CATALOG_ACCESS),
    ("repository(plugin):foo:pull", Access("repository", "foo", ("pull",))),
    ("repository:host:5000/foo:pull", Access("repository", "host:5000/foo", ("pull",))),
    ("repository:foo", None),
    ("repository::pull", None),
    (":foo:pull", None),
    ("repository:foo:", None),
    ("", None),
    ("repository(x:foo:pull", None),
    ("repository:" + "a" * 2000 + ":pull", None),
])
def test_parse_scope(text: str, expected: Access | None) -> None:
    assert parse_scope(text) == expected


def test_parse_scopes_merges_repeats_and_splits_spaces() -> None:
    got = parse_scopes(["repository:a:pull", "repository:a:push repository:b:pull", "junk", "repository:a:pull"])
    assert [a.scope for a in got] == ["repository:a:pull,push", "repository:b:pull"]


def test_parse_scopes_is_bounded() -> None:
    got = parse_scopes([f"repository:r{i}:pull" for i in range(500)])
    assert len(got) == 100 and got[-1].name == "r99"


def test_merge_keeps_first_seen_order() -> None:
    got = merge([Access("repository", "b", ("pull",)), Access("repository", "a", ("push",)),
                 Access("repository", "b", ("delete",))])
    assert [a.scope for a in got] == ["repository:b:delete,pull", "repository:a:push"]


@pytest.mark.parametrize("name,ok", [
    ("foo", True), ("foo/bar-baz_1.2", True), ("Foo", False), ("foo/", False), ("foo//bar", False),
    ("foo/../bar", False), ("foo%2Fbar", False), ("foo:bar", False), ("/foo", False), ("..", False),
])
def test_grantable_repository_names(name: str, ok: bool) -> None:
    assert is_grantable(Access("repository", name, ("pull",))) is ok


def test_grantable_registry_resources() -> None:
    assert is_grantable(CATALOG_ACCESS)
    assert not is_grantable(Access("registry", "other", ("*",)))
    assert not is_grantable(Access("plugin", "foo", ("pull",)))


def test_covers() -> None:
    assert covers(["pull"], "pull")
    assert not covers(["pull"], "push")
    assert covers(["*"], "delete")
    assert not covers([], "pull")
