"""The access policy: parsing, globs, grants, immutability, intersection with requests."""

from __future__ import annotations

import pytest

from auth.access import CATALOG_ACCESS, Access, parse_scopes
from auth.policy import EVERYTHING, OPEN_POLICY, PolicyError, compile_glob, parse_policy

EXAMPLE = """
groups:
  developers: [alice, bob]
  ci: [robot]
  ops: [olga]
admins: [root, "@ops"]
rules:
  - repository: "public/**"
    anonymous: [pull]
    authenticated: [pull]
  - repository: ["team/*", "team/**"]
    groups: {developers: [pull, push, delete, overwrite]}
    users: {robot: "pull,push"}
  - repository: "releases/**"
    groups: {ci: ["*"]}
    authenticated: [pull]
    immutable: true
"""


@pytest.fixture
def policy():  # type: ignore[no-untyped-def]
    return parse_policy(EXAMPLE)


@pytest.mark.parametrize("pattern,name,ok", [
    ("library/*", "library/ubuntu", True),
    ("library/*", "library/a/b", False),
    ("library/*", "library", False),
    ("library/**", "library/a/b", True),
    ("**", "anything/at/all", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("a.b", "axb", False),
    ("*/base", "x/base", True),
])
def test_globs(pattern: str, name: str, ok: bool) -> None:
    assert bool(compile_glob(pattern).fullmatch(name)) is ok


def test_anonymous(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.actions(None, "public/x") == {"pull"}
    assert policy.actions(None, "team/x") == frozenset()
    assert policy.may_list_catalog(None)


def test_users_get_what_anonymous_gets(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.actions("stranger", "public/a/b") == {"pull"}
    assert policy.actions("stranger", "team/x") == frozenset()


def test_groups_and_users(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.actions("alice", "team/x") == EVERYTHING
    assert policy.actions("robot", "team/x/y") == {"pull", "push"}
    assert policy.actions("robot", "releases/v1") == {"pull", "push", "delete"}  # * minus overwrite


def test_admins_directly_and_through_groups(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.actions("root", "anything") == EVERYTHING
    assert policy.actions("olga", "team/x") == EVERYTHING
    assert policy.is_admin("olga") and not policy.is_admin("alice") and not policy.is_admin(None)


def test_immutable_binds_admins_too(policy) -> None:  # type: ignore[no-untyped-def]
    assert "overwrite" not in policy.actions("root", "releases/x")
    assert "push" in policy.actions("root", "releases/x")


@pytest.mark.parametrize("name", ["Team/x", "team/x/", "team//x", "team/../x", "team/x:1", "team%2Fx", ""])
def test_invalid_names_get_nothing(policy, name: str) -> None:  # type: ignore[no-untyped-def]
    assert policy.actions("root", name) == frozenset()


def test_grant_is_the_intersection(policy) -> None:  # type: ignore[no-untyped-def]
    asked = parse_scopes(["repository:team/x:pull,push,delete", "repository:public/a:push,pull",
                          "repository:secret:pull", "registry:catalog:*"])
    got = policy.grant("robot", asked)
    assert [a.scope for a in got] == ["repository:team/x:pull,push", "repository:public/a:pull",
                                      "registry:catalog:*"]


def test_grant_star_expands_to_what_is_allowed(policy) -> None:  # type: ignore[no-untyped-def]
    got = policy.grant("robot", [Access("repository", "team/x", ("*",))])
    assert got == [Access("repository", "team/x", ("pull", "push"))]


def test_grant_drops_tricks(policy) -> None:  # type: ignore[no-untyped-def]
    asked = parse_scopes(["repository:Team/x:pull", "repository:team/x/:pull", "repository:team/../x:pull",
                          "repository:team%2Fx:pull", "repository:team/x:pull:push", "registry:other:*",
                          "plugin:team/x:pull", "registry:catalog:pull"])
    assert policy.grant("root", asked) == []


def test_anonymous_catalog_only_with_anonymous_pull() -> None:
    assert not parse_policy("rules: []").may_list_catalog(None)
    assert parse_policy("rules: []").may_list_catalog("anyone")
    assert parse_policy("rules: []").grant(None, [CATALOG_ACCESS]) == []


def test_open_policy_is_registry2() -> None:
    assert OPEN_POLICY.actions("anyone", "a/b") == EVERYTHING
    assert OPEN_POLICY.actions(None, "a/b") == frozenset()
    assert not OPEN_POLICY.may_list_catalog(None)


def test_empty_file() -> None:
    p = parse_policy("")
    assert p.actions("alice", "x") == frozenset()


@pytest.mark.parametrize("text,where", [
    ("[1, 2]", "policy"),
    ("bogus: 1", "bogus"),
    ("rules: {a: 1}", "rules"),
    ("rules: [{anonymous: [pull]}]", "rules[0].repository"),
    ("rules: [{repository: x, anonymous: [fly]}]", "rules[0].anonymous"),
    ("rules: [{repository: x, groups: {nope: [pull]}}]", "rules[0].groups.nope"),
    ("rules: [{repository: x, color: red}]", "rules[0].color"),
    ("rules: [{repository: X}]", "rules[0].repository"),
    ("rules: [{repository: x, immutable: yes-please}]", "rules[0].immutable"),
    ("rules: [{repository: [1]}]", "rules[0].repository"),
    ("admins: ['@ghosts']", "admins"),
    ("groups: {a: [1]}", "groups.a"),
    ("rules: [{repository: x, users: [alice]}]", "rules[0].users"),
    ("{{{", "YAML"),
])
def test_errors_name_the_key(text: str, where: str) -> None:
    with pytest.raises(PolicyError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(text)
