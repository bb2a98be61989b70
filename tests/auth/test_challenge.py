"""WWW-Authenticate building and parsing; Authorization parsing."""

from __future__ import annotations

import base64

import pytest

from auth.challenge import (
    BasicCredentials,
    BearerToken,
    Challenge,
    MalformedAuthorization,
    basic_authorization,
    basic_challenge,
    bearer_challenge,
    find_challenge,
    parse_authorization,
    parse_www_authenticate,
)


def test_bearer_challenge_layout() -> None:
    header = bearer_challenge("https://r/auth/token", "reg", ["repository:a:pull", "repository:b:push"],
                              "insufficient_scope")
    assert header == ('Bearer realm="https://r/auth/token",service="reg",'
                      'scope="repository:a:pull repository:b:push",error="insufficient_scope"')


def test_bearer_challenge_without_scope_or_error() -> None:
    assert bearer_challenge("r", "s") == 'Bearer realm="r",service="s"'


def test_basic_challenge_quotes() -> None:
    header = basic_challenge('My "Registry" \\ x')
    assert header == 'Basic realm="My \\"Registry\\" \\\\ x"'
    assert parse_www_authenticate(header)[0].realm == 'My "Registry" \\ x'


def test_round_trip() -> None:
    header = bearer_challenge("https://h:5000/auth/token", "svc", ["repository:a/b:pull,push", "registry:catalog:*"],
                              "invalid_token")
    (c,) = parse_www_authenticate(header)
    assert c.scheme == "bearer"
    assert c.realm == "https://h:5000/auth/token"
    assert c.params["service"] == "svc"
    assert c.scopes == ["repository:a/b:pull,push", "registry:catalog:*"]
    assert c.params["error"] == "invalid_token"


@pytest.mark.parametrize("header,expected", [
    ('Basic realm="x"', [Challenge("basic", {"realm": "x"})]),
    ('BASIC Realm="x"', [Challenge("basic", {"realm": "x"})]),
    ('Bearer realm="a", service="b" , Basic realm="c"',
     [Challenge("bearer", {"realm": "a", "service": "b"}), Challenge("basic", {"realm": "c"})]),
    ("Bearer realm=https://h:5000/token,service=reg",
     [Challenge("bearer", {"realm": "https://h:5000/token", "service": "reg"})]),
    ('Bearer realm="a,b",scope="x y"', [Challenge("bearer", {"realm": "a,b", "scope": "x y"})]),
    ('Bearer realm="first", realm="second"', [Challenge("bearer", {"realm": "first"})]),
    ("Negotiate abc==, Basic realm=r", [Challenge("negotiate", {}, "abc=="), Challenge("basic", {"realm": "r"})]),
    ("Bearer", [Challenge("bearer", {})]),
    ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
    ("", []),
    (",,, ,", []),
])
def test_parse(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


def test_parse_several_header_values() -> None:
    got = parse_www_authenticate(['Basic realm="a"', 'Bearer realm="b",service="s"'])
    assert find_challenge(got, "BEARER") == Challenge("bearer", {"realm": "b", "service": "s"})
    assert find_challenge(got, "digest") is None


def test_parse_never_raises_on_garbage() -> None:
    for junk in ['"', "=", "==", 'a="', "\x00\x01", "Bearer ===,=,", "(((", 'Bearer realm=="x"']:
        parse_www_authenticate(junk)


def test_basic_authorization_round_trip() -> None:
    creds = parse_authorization([basic_authorization("alice", "p:a:ss wörd")])
    assert creds == BasicCredentials("alice", "p:a:ss wörd")


def test_password_not_in_repr() -> None:
    assert "hunter2" not in repr(BasicCredentials("alice", "hunter2"))
    assert "tok" not in repr(BearerToken("tok"))


def test_bearer() -> None:
    assert parse_authorization(["Bearer abc.def-_.ghi"]) == BearerToken("abc.def-_.ghi")
    assert parse_authorization(["bearer   abc"]) == BearerToken("abc")


def test_absent_or_other_scheme() -> None:
    assert parse_authorization([]) is None
    assert parse_authorization(["Digest username=x"]) is None


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("values", [
    ["Basic " + b64(b"a:b"), "Basic " + b64(b"a:b")],
    ["Bearer x", "Bearer y"],
    ["Basic " + b64(b"a:b"), "Bearer y"],
    ["Basic !!!notbase64"],
    ["Basic " + b64(b"no-colon")],
    ["Basic " + b64(b"\xff\xfe:x")],
    ["Basic"],
    ["Bearer"],
    ["Bearer a b"],
    ["Bearer a\"b"],
    ["Bearer " + "a" * 20000],
])
def test_malformed(values: list[str]) -> None:
    with pytest.raises(MalformedAuthorization):
        parse_authorization(values)
