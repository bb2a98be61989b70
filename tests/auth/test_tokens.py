"""Key ids, signing keys, issuing and verifying tokens — including every forgery we know of."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from auth.access import Access
from auth.tokens import (
    LEEWAY,
    SigningKey,
    TokenError,
    TokenVerifier,
    TrustedKeys,
    generate_signing_key,
    issue_refresh_token,
    issue_token,
    jwk_thumbprint,
    libtrust_key_id,
    load_or_create_signing_key,
    public_jwk,
    refresh_audience,
    rfc3339,
)
from tests.auth.conftest import cert_pem, ec_key, make_cert, rsa_key, x5c

ISS, AUD = "issuer", "registry"
PULL_A = [Access("repository", "a", ("pull",))]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISS, "sub": "alice", "aud": AUD, "exp": now + 300, "nbf": now, "iat": now,
                            "jti": "j", "access": [a.to_claim() for a in PULL_A]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, payload: dict[str, Any], alg: str = "ES256", **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers or None)


def verifier_for(*keys: Any, **kw: Any) -> TokenVerifier:
    trusted = TrustedKeys()
    for k in keys:
        trusted.add_key(k.public_key())
    return TokenVerifier(trusted, issuer=ISS, audience=AUD, **kw)


# --- key ids ---------------------------------------------------------------------------------

def test_jwk_thumbprint_rfc7638_example() -> None:
    # RFC 7638 section 3.1.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
         "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0"
         "zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-c"
         "sFCur-kEgU8awapJzKnqDKgw")
    key = rsa.RSAPublicNumbers(int.from_bytes(b64url_decode("AQAB"), "big"),
                               int.from_bytes(b64url_decode(n), "big")).public_key()
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_libtrust_key_id_shape_and_definition() -> None:
    key = ec_key().public_key()
    kid = libtrust_key_id(key)
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b32decode(kid.replace(":", "")) == hashlib.sha256(der).digest()[:30]


def test_key_ids_differ_per_key() -> None:
    a, b = ec_key().public_key(), ec_key().public_key()
    assert libtrust_key_id(a) != libtrust_key_id(b)
    assert jwk_thumbprint(a) != jwk_thumbprint(b)


@pytest.mark.parametrize("make", [ec_key, rsa_key, ed25519.Ed25519PrivateKey.generate])
def test_thumbprint_over_every_key_type(make: Any) -> None:
    key = make().public_key()
    members = public_jwk(key)
    assert members["kty"] in ("EC", "RSA", "OKP")
    assert len(b64url_decode(jwk_thumbprint(key))) == 32


# --- signing keys ----------------------------------------------------------------------------

def test_signing_key_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "key.pem"
    key = load_or_create_signing_key(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key.algorithm == "ES256"
    again = load_or_create_signing_key(str(path))
    assert again.kid == key.kid


def test_existing_rsa_key_signs_rs256(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "key.pem"
    pem = rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, "berth.auth"):
        key = load_or_create_signing_key(str(path))
    assert key.algorithm == "RS256"
    assert "readable by other users" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_bad_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ValueError):
        load_or_create_signing_key(str(path))


def test_small_rsa_keys_refused() -> None:
    with pytest.raises(ValueError):
        SigningKey.from_private_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def test_other_curves() -> None:
    assert SigningKey.from_private_key(ec.generate_private_key(ec.SECP384R1())).algorithm == "ES384"
    assert SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate()).algorithm == "EdDSA"
    with pytest.raises(ValueError):
        SigningKey.from_private_key(ec.generate_private_key(ec.SECP256K1()))


# --- issue and verify ------------------------------------------------------------------------

def test_issue_and_verify_round_trip() -> None:
    key = generate_signing_key()
    token = issue_token(key, issuer=ISS, audience=AUD, subject="alice", access=PULL_A, lifetime=300)
    header = jwt.get_unverified_header(token)
    assert header["kid"] == key.kid and header["alg"] == "ES256"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert payload["exp"] - payload["iat"] == 300
    got = verifier_for(key.private_key).verify(token)
    assert got.subject == "alice"
    assert got.access == tuple(PULL_A)
    assert got.actions("repository", "a") == {"pull"}
    assert got.actions("repository", "b") == frozenset()


def test_rs256_round_trip() -> None:
    key = SigningKey.from_private_key(rsa_key())
    token = issue_token(key, issuer=ISS, audience=AUD, subject="", access=(), lifetime=60)
    trusted = TrustedKeys()
    trusted.add_key(key.public_key)
    assert TokenVerifier(trusted, issuer=ISS, audience=AUD).verify(token).subject == ""


def test_jti_is_unique() -> None:
    key = generate_signing_key()
    ids = {jwt.decode(issue_token(key, issuer=ISS, audience=AUD, subject="a", access=(), lifetime=60),
                      options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_kid_may_be_libtrust_or_thumbprint() -> None:
    key = ec_key()
    v = verifier_for(key)
    for kid in (libtrust_key_id(key.public_key()), jwk_thumbprint(key.public_key())):
        assert v.verify(sign(key, claims(), kid=kid)).subject == "alice"


def test_audience_list_and_token_without_nbf() -> None:
    key = ec_key()
    kid = libtrust_key_id(key.public_key())
    assert verifier_for(key).verify(sign(key, claims(aud=["other", AUD], nbf=None, iat=None), kid=kid))


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


# --- forgeries -------------------------------------------------------------------------------

def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(signature)])


def test_alg_none_rejected() -> None:
    key = ec_key()
    kid = libtrust_key_id(key.public_key())
    for alg in ("none", "None", "NONE"):
        with pytest.raises(TokenError, match="algorithm"):
            verifier_for(key).verify(forge({"alg": alg, "kid": kid}, claims()))


def test_hs256_signed_with_the_public_key_rejected() -> None:
    key = rsa_key()
    kid = libtrust_key_id(key.public_key())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="algorithm"):
        verifier_for(key).verify(f"{header}.{payload}.{b64url(mac)}")


def test_algorithm_must_fit_the_key() -> None:
    # An RSA key trusted; a token claiming ES256 under its kid must not be tried as EC.
    rsa_k, ec_k = rsa_key(), ec_key()
    trusted = TrustedKeys()
    trusted.add_key(rsa_k.public_key())
    token = sign(ec_k, claims(), "ES256", kid=libtrust_key_id(rsa_k.public_key()))
    with pytest.raises(TokenError, match="does not fit"):
        TokenVerifier(trusted, issuer=ISS, audience=AUD).verify(token)


def test_pinned_algorithms() -> None:
    key = rsa_key()
    kid = libtrust_key_id(key.public_key())
    token = sign(key, claims(), "PS256", kid=kid)
    assert verifier_for(key).verify(token)
    with pytest.raises(TokenError, match="algorithm"):
        verifier_for(key, algorithms=["RS256"]).verify(token)
    with pytest.raises(TokenError, match="algorithm"):  # HS256 can never be pinned in
        verifier_for(key, algorithms=["HS256"]).verify(sign(b"k" * 32, claims(), "HS256", kid=kid))


@pytest.mark.parametrize("over,match", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": None}, "exp"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ({"iat": int(time.time()) + 3600}, "not valid yet"),
    ({"aud": "another-registry"}, "another service"),
    ({"aud": None}, "aud"),
    ({"iss": "someone-else"}, "issuer"),
    ({"iss": None}, "iss"),
    ({"exp": "soon"}, "invalid|malformed"),
    ({"access": "everything"}, "access"),
    ({"access": [{"type": "repository", "name": "a", "actions": "pull"}]}, "access"),
    ({"sub": 5}, "invalid|malformed"),
])
def test_bad_claims(over: dict[str, Any], match: str) -> None:
    key = ec_key()
    token = sign(key, claims(**over), kid=libtrust_key_id(key.public_key()))
    with pytest.raises(TokenError, match=match):
        verifier_for(key).verify(token)


def test_leeway_is_sixty_seconds() -> None:
    key = ec_key()
    kid = libtrust_key_id(key.public_key())
    now = time.time()
    token = sign(key, claims(exp=int(now) - 30), kid=kid)
    assert verifier_for(key).verify(token, now=now)
    with pytest.raises(TokenError, match="expired"):
        verifier_for(key).verify(token, now=now + LEEWAY)


def test_unknown_kid() -> None:
    key, other = ec_key(), ec_key()
    with pytest.raises(TokenError, match="unknown key"):
        verifier_for(key).verify(sign(other, claims(), kid=libtrust_key_id(other.public_key())))


def test_no_key_reference() -> None:
    key = ec_key()
    with pytest.raises(TokenError, match="names no signing key"):
        verifier_for(key).verify(sign(key, claims()))


def test_signed_by_another_key_under_a_trusted_kid() -> None:
    key, other = ec_key(), ec_key()
    with pytest.raises(TokenError, match="signature"):
        verifier_for(key).verify(sign(other, claims(), kid=libtrust_key_id(key.public_key())))


def test_tampered_payload() -> None:
    key = ec_key()
    token = sign(key, claims(), kid=libtrust_key_id(key.public_key()))
    head, _, sig = token.split(".")
    evil = b64url(json.dumps(claims(access=[{"type": "repository", "name": "a", "actions": ["*"]}])).encode())
    with pytest.raises(TokenError, match="signature"):
        verifier_for(key).verify(f"{head}.{evil}.{sig}")


def test_tampered_signature() -> None:
    key = ec_key()
    token = sign(key, claims(), kid=libtrust_key_id(key.public_key()))
    head, body, sig = token.split(".")
    raw = bytearray(b64url_decode(sig))
    raw[5] ^= 1
    with pytest.raises(TokenError):
        verifier_for(key).verify(f"{head}.{body}.{b64url(bytes(raw))}")
    with pytest.raises(TokenError):
        verifier_for(key).verify(f"{head}.{body}.")


def test_tampered_header_kid_swap() -> None:
    key = ec_key()
    token = sign(key, claims(), kid=libtrust_key_id(key.public_key()))
    _, body, sig = token.split(".")
    head = b64url(json.dumps({"alg": "ES256", "kid": jwk_thumbprint(key.public_key()), "typ": "JWT"}).encode())
    with pytest.raises(TokenError, match="signature"):
        verifier_for(key).verify(f"{head}.{body}.{sig}")


@pytest.mark.parametrize("junk", ["", "a", "a.b", "a.b.c.d", "!!!.???.###", "e30.e30.", "bnVsbA.e30.e30"])
def test_garbage(junk: str) -> None:
    with pytest.raises(TokenError):
        verifier_for(ec_key()).verify(junk)


def test_error_messages_never_contain_the_token() -> None:
    key = ec_key()
    token = sign(key, claims(exp=1), kid=libtrust_key_id(key.public_key()))
    with pytest.raises(TokenError) as info:
        verifier_for(key).verify(token)
    assert token not in str(info.value) and token.split(".")[1] not in str(info.value)


# --- x5c chains, JWKS and jwk headers -------------------------------------------------------

def chain_setup() -> tuple[Any, Any, Any, Any, Any]:
    root_key, inter_key, leaf_key = ec_key(), ec_key(), ec_key()
    root = make_cert("root", root_key, ca=True)
    inter = make_cert("inter", inter_key, issuer=(root, root_key), ca=True)
    leaf = make_cert("leaf", leaf_key, issuer=(inter, inter_key))
    return root, inter, leaf, leaf_key, inter_key


def bundle_verifier(tmp_path: Path, *certs: Any) -> TokenVerifier:
    path = tmp_path / "bundle.pem"
    path.write_bytes(cert_pem(*certs))
    return TokenVerifier(TrustedKeys.from_files(rootcertbundle=str(path)), issuer=ISS, audience=AUD)


def test_x5c_chain_to_a_trusted_root(tmp_path: Path) -> None:
    root, inter, leaf, leaf_key, _ = chain_setup()
    v = bundle_verifier(tmp_path, root)
    assert v.verify(sign(leaf_key, claims(), x5c=x5c(leaf, inter))).subject == "alice"
    # The root itself may be included at the end.
    assert v.verify(sign(leaf_key, claims(), x5c=x5c(leaf, inter, root)))


def test_x5c_leaf_that_is_itself_trusted(tmp_path: Path) -> None:
    key = ec_key()
    cert = make_cert("self", key)  # not a CA: trusted because it is in the bundle
    v = bundle_verifier(tmp_path, cert)
    assert v.verify(sign(key, claims(), x5c=x5c(cert)))
    assert v.verify(sign(key, claims(), kid=libtrust_key_id(key.public_key())))


def test_x5c_untrusted_root(tmp_path: Path) -> None:
    root, inter, leaf, leaf_key, _ = chain_setup()
    other = make_cert("other", ec_key(), ca=True)
    with pytest.raises(TokenError, match="trusted root"):
        bundle_verifier(tmp_path, other).verify(sign(leaf_key, claims(), x5c=x5c(leaf, inter, root)))


def test_x5c_missing_intermediate(tmp_path: Path) -> None:
    root, inter, leaf, leaf_key, _ = chain_setup()
    with pytest.raises(TokenError, match="trusted root"):
        bundle_verifier(tmp_path, root).verify(sign(leaf_key, claims(), x5c=x5c(leaf)))


def test_x5c_signed_by_a_key_other_than_the_leaf(tmp_path: Path) -> None:
    root, inter, leaf, _, inter_key = chain_setup()
    with pytest.raises(TokenError, match="signature"):
        bundle_verifier(tmp_path, root).verify(sign(inter_key, claims(), x5c=x5c(leaf, inter)))


def test_x5c_intermediate_that_is_not_a_ca(tmp_path: Path) -> None:
    root_key, inter_key, leaf_key = ec_key(), ec_key(), ec_key()
    root = make_cert("root", root_key, ca=True)
    inter = make_cert("inter", inter_key, issuer=(root, root_key), ca=False)
    leaf = make_cert("leaf", leaf_key, issuer=(inter, inter_key))
    with pytest.raises(TokenError, match="trusted root"):
        bundle_verifier(tmp_path, root).verify(sign(leaf_key, claims(), x5c=x5c(leaf, inter)))


def test_x5c_expired_leaf(tmp_path: Path) -> None:
    root_key, leaf_key = ec_key(), ec_key()
    root = make_cert("root", root_key, ca=True)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=100)
    leaf = make_cert("leaf", leaf_key, issuer=(root, root_key), not_before=past, days=10)
    with pytest.raises(TokenError, match="not valid now"):
        bundle_verifier(tmp_path, root).verify(sign(leaf_key, claims(), x5c=x5c(leaf)))


@pytest.mark.parametrize("value", ["notalist", [], ["!!!"], [base64.b64encode(b"junk").decode()], ["x"] * 20])
def test_x5c_malformed(tmp_path: Path, value: Any) -> None:
    key = ec_key()
    with pytest.raises(TokenError, match="x5c"):
        bundle_verifier(tmp_path, make_cert("r", key, ca=True)).verify(sign(key, claims(), x5c=value))


def test_jwks_file(tmp_path: Path) -> None:
    key = rsa_key()
    doc = {"keys": [{**public_jwk(key.public_key()), "kid": "my-key", "use": "sig"},
                    {**public_jwk(ec_key().public_key()), "kid": "enc", "use": "enc"}]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    v = TokenVerifier(TrustedKeys.from_files(jwks=str(path)), issuer=ISS, audience=AUD)
    for kid in ("my-key", libtrust_key_id(key.public_key()), jwk_thumbprint(key.public_key())):
        assert v.verify(sign(key, claims(), "RS256", kid=kid))
    with pytest.raises(TokenError, match="unknown key"):
        v.verify(sign(key, claims(), "RS256", kid="enc"))


@pytest.mark.parametrize("text", ["[]", "{}", '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "nope",
                                  '{"keys": [{"kty": "EC"}]}'])
def test_bad_jwks_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        TrustedKeys.from_files(jwks=str(path))


def test_bad_bundle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_text("nothing here")
    with pytest.raises(ValueError):
        TrustedKeys.from_files(rootcertbundle=str(path))


def test_jwk_header_of_a_trusted_key() -> None:
    key = ec_key()
    assert verifier_for(key).verify(sign(key, claims(), jwk=public_jwk(key.public_key())))


def test_jwk_header_of_an_untrusted_key() -> None:
    key, other = ec_key(), ec_key()
    with pytest.raises(TokenError, match="untrusted"):
        verifier_for(key).verify(sign(other, claims(), jwk=public_jwk(other.public_key())))


# --- refresh tokens --------------------------------------------------------------------------

def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    key = generate_signing_key()
    trusted = TrustedKeys()
    trusted.add_key(key.public_key)
    access_v = TokenVerifier(trusted, issuer=ISS, audience=AUD)
    refresh_v = TokenVerifier(trusted, issuer=ISS, audience=refresh_audience(AUD))
    refresh = issue_refresh_token(key, issuer=ISS, service=AUD, subject="alice", client_id="docker",
                                  fingerprint="f", lifetime=3600)
    access = issue_token(key, issuer=ISS, audience=AUD, subject="alice", access=PULL_A, lifetime=60)
    assert refresh_v.verify(refresh).extra == {"cid": "docker", "pwd": "f"}
    with pytest.raises(TokenError, match="another service"):
        access_v.verify(refresh)
    with pytest.raises(TokenError, match="another service"):
        refresh_v.verify(access)


def test_verified_tokens_are_remembered_until_they_expire() -> None:
    key = ec_key()
    kid = libtrust_key_id(key.public_key())
    v = verifier_for(key)
    now = time.time()
    token = sign(key, claims(exp=int(now) + 10), kid=kid)
    first = v.verify(token, now=now)
    assert v.verify(token, now=now) is first
    with pytest.raises(TokenError, match="expired"):
        v.verify(token, now=now + 10 + LEEWAY + 1)
    with pytest.raises(TokenError, match="expired"):
        v.verify(token, now=now + 10 + LEEWAY + 1)


def test_a_cached_token_does_not_excuse_a_tampered_twin() -> None:
    key = ec_key()
    kid = libtrust_key_id(key.public_key())
    v = verifier_for(key)
    token = sign(key, claims(), kid=kid)
    v.verify(token)
    head, _, sig = token.split(".")
    evil = b64url(json.dumps(claims(access=[{"type": "repository", "name": "b", "actions": ["*"]}])).encode())
    with pytest.raises(TokenError):
        v.verify(f"{head}.{evil}.{sig}")
