"""Endpoint filters: actions, media types, repository and tag globs."""

from __future__ import annotations

from typing import Any

import pytest

from registry.webhooks.filters import EndpointFilter, glob_regex
from tests.webhooks.conftest import notifications


def flt(**endpoint: Any) -> EndpointFilter:
    return EndpointFilter(notifications([{"name": "e", "url": "http://127.0.0.1:9/", **endpoint}]).endpoints[0])


def rec(action: str = "push", repository: str = "lib/app", tag: str = "", media: str = "m") -> dict[str, Any]:
    target: dict[str, Any] = {"mediaType": media, "repository": repository}
    if tag:
        target["tag"] = tag
    return {"action": action, "target": target}


@pytest.mark.parametrize(("pattern", "value", "ok"), [
    ("lib/*", "lib/app", True),
    ("lib/*", "lib/app/sub", False),
    ("lib/**", "lib/app/sub", True),
    ("**/app", "a/b/app", True),
    ("v?.*", "v1.2", True),
    ("v?.*", "v10.2", False),
    ("v[0-9]*", "v9", True),
    ("v[!0-9]*", "v9", False),
    ("release-[ab]", "release-b", True),
    ("a.b", "axb", False),
    ("[", "[", True),
])
def test_glob(pattern: str, value: str, ok: bool) -> None:
    assert bool(glob_regex(pattern).match(value)) is ok


def test_no_filters_pass_everything() -> None:
    f = flt()
    assert all(f.matches(rec(a)) for a in ("push", "pull", "mount", "delete"))


def test_ignore_actions_and_media_types() -> None:
    f = flt(ignore={"actions": ["pull", "delete"], "mediatypes": ["application/octet-stream"]},
            ignoredmediatypes=["application/vnd.oci.image.index.v1+json"])
    assert f.matches(rec("push"))
    assert not f.matches(rec("pull"))
    assert not f.matches(rec("delete"))
    assert not f.matches(rec(media="application/octet-stream"))
    assert not f.matches(rec(media="application/vnd.oci.image.index.v1+json"))


def test_repository_globs() -> None:
    f = flt(repositories=["prod/*", "team/**"])
    assert f.matches(rec(repository="prod/web"))
    assert f.matches(rec(repository="team/a/b"))
    assert not f.matches(rec(repository="prod/web/x"))
    assert not f.matches(rec(repository="dev/web"))


def test_tag_globs_drop_untagged_events() -> None:
    f = flt(tags=["v*", "latest"])
    assert f.matches(rec(tag="v1.0"))
    assert f.matches(rec(tag="latest"))
    assert not f.matches(rec(tag="dev"))
    assert not f.matches(rec())  # a blob push or a push by digest has no tag
