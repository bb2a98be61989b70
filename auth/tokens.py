"""Registry bearer tokens: key ids, signing keys, issuing and verifying JWTs (with pyjwt).

Guarantees of :class:`TokenVerifier`: only the pinned asymmetric algorithms are
accepted (never ``none`` or HMAC), and only when they fit the key's type and
curve; the signing key must be trusted — a ``kid`` that is the libtrust
fingerprint or the RFC 7638 thumbprint of a trusted key (or a JWKS ``kid``), an
``x5c`` chain that verifies up to a root of the bundle, or a ``jwk`` header
that is a trusted key; ``exp`` is required and ``exp``/``nbf``/``iat`` are
checked with Distribution's 60 s leeway; ``iss`` and ``aud`` must match.
:class:`TokenError` messages never contain the token.

Refresh tokens are JWTs of Berth's own key with a distinct audience, so one can
never be used as an access token nor an access token as a refresh token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence, Union

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from auth.access import Access
from auth.config import SUPPORTED_ALGORITHMS

log = logging.getLogger("berth.auth")

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey]
PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]

LEEWAY = 60.0
MAX_CHAIN_LENGTH = 8
VERIFIED_CACHE_SIZE = 4096
REFRESH_AUDIENCE_PREFIX = "berth-refresh:"
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class TokenError(Exception):
    """A token that must not be honoured; the message is safe to log and to show the client."""


# --- key ids -----------------------------------------------------------------------------------

def _spki_der(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def libtrust_key_id(public_key: PublicKey) -> str:
    """libtrust's key id: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo), in groups of 4."""
    digest = hashlib.sha256(_spki_der(public_key)).digest()[:30]
    text = base64.b32encode(digest).decode("ascii").rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    """The key's public JWK members."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(public_key, as_dict=True))
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public_key, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(public_key, as_dict=True))


_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def jwk_thumbprint(public_key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    jwk_ = public_jwk(public_key)
    members = {name: jwk_[name] for name in _THUMBPRINT_MEMBERS[jwk_["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode("ascii").rstrip("=")


def key_algorithms(public_key: PublicKey) -> frozenset[str]:
    """The JWS algorithms that fit the key's type (and curve)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(public_key.curve.name)
        return frozenset({alg} if alg else ())
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return frozenset({"EdDSA"})
    return frozenset()


def _same_key(a: PublicKey, b: PublicKey) -> bool:
    return _spki_der(a) == _spki_der(b)


# --- signing key ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    """Berth's token signing key, its algorithm and key id (the libtrust fingerprint)."""

    private_key: PrivateKey = field(repr=False)
    algorithm: str
    kid: str

    @classmethod
    def from_private_key(cls, private_key: Any) -> "SigningKey":
        """Wrap an RSA (RS256), EC P-256/384/521 (ES256/384/512) or Ed25519 (EdDSA) private key."""
        if isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise ValueError("RSA signing keys must have at least 2048 bits")
            alg = "RS256"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey):
            found = _EC_ALGORITHMS.get(private_key.curve.name)
            if found is None:
                raise ValueError(f"unsupported EC curve {private_key.curve.name}")
            alg = found
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            alg = "EdDSA"
        else:
            raise ValueError("signing key must be RSA, EC or Ed25519")
        return cls(private_key, alg, libtrust_key_id(private_key.public_key()))

    @property
    def public_key(self) -> PublicKey:
        """The public half."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """The public JWK with ``kid``, ``alg`` and ``use`` (for ``/auth/jwks``)."""
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def generate_signing_key() -> SigningKey:
    """A fresh EC P-256 (ES256) key."""
    return SigningKey.from_private_key(ec.generate_private_key(ec.SECP256R1()))


def load_or_create_signing_key(path: str) -> SigningKey:
    """Blocking: the PEM private key at ``path``, created (mode 0600, EC P-256) if the file is missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        return load_or_create_signing_key(path)
    else:
        key = generate_signing_key()
        pem = key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.info("created token signing key %s (kid %s)", path, key.kid)
        return key
    with open(path, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        data = fh.read()
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token signing key %s is readable by other users; chmod 600 it", path)
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key") from exc
    return SigningKey.from_private_key(private_key)


# --- issuing ----------------------------------------------------------------------------------

def rfc3339(ts: float) -> str:
    """A UTC timestamp as RFC 3339 (what Docker's client parses ``issued_at`` with)."""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_token(key: SigningKey, *, issuer: str, audience: str, subject: str, access: Iterable[Access],
                lifetime: float, now: float | None = None, extra: Mapping[str, Any] | None = None) -> str:
    """A signed access token granting ``access`` to ``subject`` ('' for anonymous)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + int(lifetime),
        "nbf": issued,
        "iat": issued,
        "jti": secrets.token_hex(16),
        "access": [a.to_claim() for a in access],
    }
    claims.update(extra or {})
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"})


# --- verifying --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    subject: str
    access: tuple[Access, ...]
    issuer: str
    expires_at: float
    jti: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def actions(self, type_: str, name: str) -> frozenset[str]:
        """The actions granted on one resource."""
        return frozenset(a for acc in self.access if acc.type == type_ and acc.name == name for a in acc.actions)


def _b64decode_std(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load_certs_pem(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{source}: no PEM certificates could be read") from exc
    return certs


class TrustedKeys:
    """The keys and root certificates a verifier trusts, indexed by every accepted key id."""

    def __init__(self) -> None:
        self.keys: dict[str, PublicKey] = {}
        self.roots: list[x509.Certificate] = []

    def add_key(self, public_key: PublicKey, kid: str = "") -> None:
        """Trust ``public_key`` under its libtrust id, its RFC 7638 thumbprint and ``kid``."""
        for key_id in (libtrust_key_id(public_key), jwk_thumbprint(public_key), kid):
            if key_id:
                self.keys[key_id] = public_key

    def add_root(self, cert: x509.Certificate) -> None:
        """Trust a root certificate for ``x5c`` chains, and its key for ``kid`` lookups."""
        self.roots.append(cert)
        self.add_key(cert.public_key())  # type: ignore[arg-type]

    def add_jwks(self, document: Mapping[str, Any], source: str = "jwks") -> None:
        """Trust every signing key of a JWKS document."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ValueError(f"{source}: expected a JSON object with a 'keys' list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{source}: key {i} is unusable: {exc}") from None
            if not key_algorithms(key):
                raise ValueError(f"{source}: key {i} is not a public signing key")
            self.add_key(key, str(entry.get("kid") or ""))

    @classmethod
    def from_files(cls, rootcertbundle: str = "", jwks: str = "") -> "TrustedKeys":
        """Blocking: read a PEM certificate bundle and/or a JWKS file."""
        trusted = cls()
        if rootcertbundle:
            with open(rootcertbundle, "rb") as fh:
                for cert in _load_certs_pem(fh.read(), rootcertbundle):
                    trusted.add_root(cert)
        if jwks:
            with open(jwks, "rb") as fh:
                try:
                    document = json.loads(fh.read())
                except ValueError:
                    raise ValueError(f"{jwks}: not JSON") from None
            if not isinstance(document, dict):
                raise ValueError(f"{jwks}: expected a JSON object")
            trusted.add_jwks(document, jwks)
        return trusted

    # -- key resolution from a token header --

    def _verify_chain(self, x5c: Any, now: float) -> PublicKey:
        if not isinstance(x5c, list) or not x5c or len(x5c) > MAX_CHAIN_LENGTH:
            raise TokenError("malformed x5c header")
        try:
            chain = [x509.load_der_x509_certificate(_b64decode_std(c)) for c in x5c]
        except (TypeError, ValueError, binascii.Error):
            raise TokenError("malformed certificate in x5c header") from None
        moment = datetime.fromtimestamp(now, timezone.utc)
        roots_der = {r.public_bytes(serialization.Encoding.DER) for r in self.roots}

        def usable(cert: x509.Certificate, as_issuer: bool) -> bool:
            if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
                return False
            if as_issuer and cert.version == x509.Version.v3:
                try:
                    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                except x509.ExtensionNotFound:
                    return False
                return bc.ca
            return True

        def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature):
                return False
            return usable(parent, as_issuer=True)

        if not usable(chain[0], as_issuer=False):
            raise TokenError("x5c certificate is not valid now")
        current = chain[0]
        for nxt in [*chain[1:], None]:
            if current.public_bytes(serialization.Encoding.DER) in roots_der:
                break
            if any(issued_by(current, root) for root in self.roots):
                break
            if nxt is None or not issued_by(current, nxt):
                raise TokenError("x5c chain does not lead to a trusted root")
            current = nxt
        return chain[0].public_key()  # type: ignore[return-value]

    def resolve(self, header: Mapping[str, Any], now: float) -> PublicKey:
        """The trusted key that signed a token with this header, or :class:`TokenError`."""
        if "x5c" in header:
            return self._verify_chain(header["x5c"], now)
        if "jwk" in header:
            raw = header["jwk"]
            if not isinstance(raw, dict):
                raise TokenError("malformed jwk header")
            try:
                key = jwt.PyJWK({k: v for k, v in raw.items() if k != "x5c"}).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                raise TokenError("malformed jwk header") from None
            if "x5c" in raw:
                leaf = self._verify_chain(raw["x5c"], now)
                if not _same_key(leaf, key):
                    raise TokenError("jwk header does not match its certificate")
                return leaf
            trusted = self.keys.get(jwk_thumbprint(key))
            if trusted is None or not _same_key(trusted, key):
                raise TokenError("token signed by an untrusted key")
            return trusted
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            found = self.keys.get(kid)
            if found is None:
                raise TokenError("token signed by an unknown key")
            return found
        raise TokenError("token names no signing key")


class TokenVerifier:
    """Checks signature, algorithm, key trust, issuer, audience and times of bearer tokens."""

    def __init__(self, trusted: TrustedKeys, *, issuer: str, audience: str,
                 algorithms: Sequence[str] = SUPPORTED_ALGORITHMS, leeway: float = LEEWAY) -> None:
        self.trusted = trusted
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(a for a in algorithms if a in SUPPORTED_ALGORITHMS)
        self.leeway = leeway
        self._verified: dict[bytes, TokenClaims] = {}

    def verify(self, token: str, now: float | None = None) -> TokenClaims:
        """The claims of a valid token; raises :class:`TokenError` otherwise.

        Tokens that verified are remembered (by SHA-256 of the exact token text) until they
        expire, so a client reusing its token pays the signature check once.
        """
        moment = time.time() if now is None else now
        cache_key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = self._verified.get(cache_key)
        if hit is not None:
            if moment > hit.expires_at + self.leeway:
                del self._verified[cache_key]
                raise TokenError("token has expired")
            return hit
        claims = self._verify(token, moment)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[cache_key] = claims
        return claims

    def _verify(self, token: str, moment: float) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenError("token signature algorithm not accepted")
        key = self.trusted.resolve(header, moment)
        if alg not in key_algorithms(key):
            raise TokenError("token signature algorithm does not fit its key")
        try:
            claims = _decode(token, key, alg, self, moment)
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is for another service") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token from an untrusted issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        return _claims(claims)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decode(token: str, key: PublicKey, alg: str, verifier: TokenVerifier, now: float) -> dict[str, Any]:
    # Signature, issuer and audience by pyjwt; the times against ``now`` here (one clock, testable).
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=[alg], audience=verifier.audience, issuer=verifier.issuer,
        options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False,
                 "verify_iat": False})
    exp = decoded["exp"]
    if not _number(exp):
        raise TokenError("malformed exp claim")
    if now > exp + verifier.leeway:
        raise jwt.ExpiredSignatureError()
    for name in ("nbf", "iat"):
        if name in decoded:
            if not _number(decoded[name]):
                raise TokenError(f"malformed {name} claim")
            if now < decoded[name] - verifier.leeway:
                raise jwt.ImmatureSignatureError()
    return decoded


def _claims(decoded: Mapping[str, Any]) -> TokenClaims:
    raw_access = decoded.get("access") or []
    if not isinstance(raw_access, list):
        raise TokenError("malformed access claim")
    access: list[Access] = []
    for entry in raw_access:
        if not isinstance(entry, dict):
            raise TokenError("malformed access claim")
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions") or []
        if not isinstance(type_, str) or not isinstance(name, str) or not isinstance(actions, list) \
                or not all(isinstance(a, str) for a in actions):
            raise TokenError("malformed access claim")
        access.append(Access.of(type_, name, actions))
    subject = decoded.get("sub") or ""
    if not isinstance(subject, str):
        raise TokenError("malformed sub claim")
    jti = decoded.get("jti") or ""
    known = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    return TokenClaims(subject=subject, access=tuple(access), issuer=str(decoded.get("iss", "")),
                       expires_at=float(decoded["exp"]), jti=str(jti),
                       extra={k: v for k, v in decoded.items() if k not in known})


# --- refresh tokens ---------------------------------------------------------------------------

def refresh_audience(service: str) -> str:
    """The audience of refresh tokens for ``service`` (never accepted as an access token)."""
    return REFRESH_AUDIENCE_PREFIX + service


def issue_refresh_token(key: SigningKey, *, issuer: str, service: str, subject: str, client_id: str,
                        fingerprint: str, lifetime: float, now: float | None = None) -> str:
    """A long-lived token that proves ``subject`` logged in with the password whose entry has ``fingerprint``."""
    return issue_token(key, issuer=issuer, audience=refresh_audience(service), subject=subject, access=(),
                       lifetime=lifetime, now=now, extra={"cid": client_id, "pwd": fingerprint})
