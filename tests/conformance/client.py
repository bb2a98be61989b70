"""The conformance port's HTTP client: what the official suite's client (reggie) does, with its auth.

Owns the port's requests. Configured like the official suite, from ``OCI_ROOT_URL``,
``OCI_USERNAME`` and ``OCI_PASSWORD``. A request goes out as given; on a ``401`` it answers the
challenge and sends the request once more:

* ``Bearer realm=...,service=...,scope=...``: a token from the realm (``GET`` with Basic
  credentials, ``service`` and one ``scope`` parameter per scope the challenge names, no more,
  no fewer), cached per scope set in a :class:`TokenCache` that every client of one registry
  shares. A cross-repository mount's challenge names the ``from`` repository's pull scope too,
  the catalog's ``registry:catalog:*``; both are handled like any other scope set.
* ``Basic realm=...``: Basic credentials from then on.

Unlike reggie, which asks for a token after every 401, the client remembers which scope set a
kind of request (method, repository, mount source) was last challenged for and sends that cached
token up front; a token the server refuses (expired, or too narrow) is answered like any other
challenge, at most :data:`MAX_AUTH_ROUNDS` times per request. GET and HEAD follow redirects
(S3 presigned URLs) without credentials when they leave the registry's host. The cache counts
challenges, token fetches and requests sent with a token, so a run can show it authenticated.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.realclients.checks import ACCEPT, Response
from tests.servers import Server

TIMEOUT = 120
MAX_HOPS = 5
MAX_AUTH_ROUNDS = 2
ENV_ROOT_URL = "OCI_ROOT_URL"
ENV_USERNAME = "OCI_USERNAME"
ENV_PASSWORD = "OCI_PASSWORD"

_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')
_REPO_PATH = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/")

ScopeSet = frozenset[str]
RequestKind = tuple[str, str, str]  # (method, repository or path, mount source)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class TokenServiceError(AssertionError):
    """The realm refused to issue a token, or answered something that is not a token."""


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` value: scheme (lower case) and its quoted parameters."""

    scheme: str
    params: Mapping[str, str]

    @property
    def scopes(self) -> ScopeSet:
        """The space-separated ``scope`` parameter as a set."""
        return frozenset(self.params.get("scope", "").split())

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """Parse ``Scheme key="value",key="value"`` (the form registries send)."""
        scheme, _, rest = header.strip().partition(" ")
        params = {name.lower(): re.sub(r"\\(.)", r"\1", value) for name, value in _PARAM.findall(rest)}
        return cls(scheme.lower(), params)


@dataclass
class TokenCache:
    """Tokens per scope set for one registry and user, shared by every client of a run; and counts."""

    tokens: dict[ScopeSet, str] = field(default_factory=dict)
    learned: dict[RequestKind, ScopeSet] = field(default_factory=dict)
    fetched: list[ScopeSet] = field(default_factory=list)
    challenges: list[Challenge] = field(default_factory=list)
    basic: bool = False
    requests: int = 0
    bearer_requests: int = 0
    basic_requests: int = 0


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _request_kind(method: str, path: str) -> RequestKind:
    parts = urllib.parse.urlsplit(path)
    match = _REPO_PATH.match(parts.path)
    repository = match.group(1) if match else parts.path
    query = dict(urllib.parse.parse_qsl(parts.query))
    source = query.get("from", "") if "mount" in query else ""
    return (method.upper(), repository, source)


def send(method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None) -> Response:
    """One plain HTTP exchange (no auth, no redirects); any status comes back as a :class:`Response`."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


@dataclass
class ConformanceHTTP:
    """A synchronous registry client with the official suite's configuration and auth flow."""

    base_url: str
    username: str = ""
    password: str = ""
    cache: TokenCache = field(default_factory=TokenCache)

    @classmethod
    def from_env(cls, env: Mapping[str, str], cache: TokenCache | None = None) -> ConformanceHTTP:
        """A client configured like the official suite: ``OCI_ROOT_URL``, ``OCI_USERNAME``, ``OCI_PASSWORD``."""
        return cls(
            env[ENV_ROOT_URL].rstrip("/"),
            env.get(ENV_USERNAME, ""),
            env.get(ENV_PASSWORD, ""),
            cache if cache is not None else TokenCache(),
        )

    @property
    def has_credentials(self) -> bool:
        """Whether a user name was configured (the official suite's test for "authenticate")."""
        return bool(self.username)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        """Send one request, answering auth challenges and following GET/HEAD redirects (bounded)."""
        url = path if path.startswith("http") else self.base_url + path
        kind = _request_kind(method, path)
        authorization = self._preemptive(kind)
        resp = self._follow(method, url, headers, body, authorization)
        for _ in range(MAX_AUTH_ROUNDS):
            if resp.status != 401 or not self.has_credentials:
                return resp
            answer = self._answer(resp.headers.get("www-authenticate", ""), kind, authorization)
            if answer is None:
                return resp
            authorization = answer
            resp = self._follow(method, url, headers, body, authorization)
        return resp

    def _follow(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: bytes | None, authorization: str | None
    ) -> Response:
        origin = urllib.parse.urlsplit(self.base_url).netloc
        for _ in range(MAX_HOPS):
            sent = dict(headers or {})
            self.cache.requests += 1
            if authorization and urllib.parse.urlsplit(url).netloc == origin:
                sent["Authorization"] = authorization
                if authorization.startswith("Bearer "):
                    self.cache.bearer_requests += 1
                else:
                    self.cache.basic_requests += 1
            resp = send(method, url, sent, body)
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and "location" in resp.headers:
                url = urllib.parse.urljoin(url, resp.headers["location"])
                continue
            return resp
        raise AssertionError(f"{method} {url}: no final answer after {MAX_HOPS} redirects")

    def _preemptive(self, kind: RequestKind) -> str | None:
        if not self.has_credentials:
            return None
        if self.cache.basic:
            return basic_authorization(self.username, self.password)
        scopes = self.cache.learned.get(kind)
        token = self.cache.tokens.get(scopes) if scopes is not None else None
        return f"Bearer {token}" if token else None

    def _answer(self, header: str, kind: RequestKind, refused: str | None) -> str | None:
        """The Authorization to retry with after a challenge (None: nothing more to try)."""
        if not header:
            return None
        challenge = Challenge.parse(header)
        self.cache.challenges.append(challenge)
        if challenge.scheme == "basic":
            self.cache.basic = True
            return basic_authorization(self.username, self.password)
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return None
        scopes = challenge.scopes
        self.cache.learned[kind] = scopes
        token = self.cache.tokens.get(scopes)
        if token is None or refused == f"Bearer {token}":
            token = self.fetch_token(challenge)
            self.cache.tokens[scopes] = token
        return f"Bearer {token}"

    def fetch_token(self, challenge: Challenge) -> str:
        """GET a token from the challenge's realm for exactly its scopes, with Basic credentials."""
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query += [("scope", scope) for scope in sorted(challenge.scopes)]
        realm = challenge.params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query) if query else realm
        resp = send(
            "GET",
            url,
            {"Authorization": basic_authorization(self.username, self.password), "Accept": "application/json"},
        )
        if resp.status != 200:
            raise TokenServiceError(f"GET {url}: {resp.status} {resp.body[:300]!r}")
        try:
            doc = json.loads(resp.body)
            token = str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, AttributeError) as exc:
            raise TokenServiceError(f"GET {url}: no token in {resp.body[:300]!r}") from exc
        self.cache.fetched.append(challenge.scopes)
        return token

    # The verbs the workflows use ---------------------------------------------------------

    def get_manifest(self, repo: str, ref: str, accept: str = ACCEPT) -> Response:
        """GET a manifest by tag or digest."""
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": accept})

    def head_manifest(self, repo: str, ref: str, accept: str = ACCEPT) -> Response:
        """HEAD a manifest by tag or digest."""
        return self.request("HEAD", f"/v2/{repo}/manifests/{ref}", {"Accept": accept})


def auth_mode(server: Server) -> str:
    """The auth mode a conformance registry runs in: ``none``, ``htpasswd`` or ``token``."""
    auth = server.config.get("auth") or {}
    return "token" if "token" in auth else "htpasswd" if "htpasswd" in auth else "none"


def oci_env(server: Server) -> dict[str, str]:
    """The official suite's environment for ``server``: root URL and, with auth, the credentials."""
    env = {ENV_ROOT_URL: server.url}
    if server.credentials:
        env[ENV_USERNAME], env[ENV_PASSWORD] = server.credentials
    return env
