"""Registry authentication as a flow of requests (no network in here).

Owns the 401 → challenge → credentials/token → retry dance, modelled on
httpx's auth flows: :meth:`RegistryAuth.flow` is a generator that *yields* a
:class:`Request`, is *sent* the :class:`Response`, and may yield a token
request and then the retried request. The transport drives it; tests drive it
with hand-made responses.

Guarantees:

* Basic and Bearer challenges (RFC 7235 / Docker's token spec); Bearer tokens
  are fetched per (realm, service, scope set) and cached until shortly before
  they expire; a host's last challenge is remembered so later requests carry a
  token up front (no 401 round trip, so streamed bodies are sent once).
* Identity tokens (``identitytoken`` in config.json) and refresh tokens handed
  out by a token server are exchanged with the OAuth2 ``refresh_token`` grant;
  otherwise tokens come from ``GET realm?service=…&scope=…`` with Basic
  credentials (or anonymously).
* A request is retried at most once after a 401.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable, Mapping
from urllib.parse import urlencode, urlsplit

from auth.challenge import Challenge, parse_www_authenticate
from registry.client.credentials import ANONYMOUS, Credential
from registry.client.errors import AuthError

CLIENT_ID = "berth"
DEFAULT_TOKEN_TTL = 60.0
EXPIRY_SLACK = 10.0

Flow = Generator["Request", "Response", Any]


@dataclass
class Request:
    """An HTTP request as the flow sees it; ``body`` is opaque here (bytes or a payload factory)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    is_token_request: bool = False

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL."""
        return urlsplit(self.url).netloc


@dataclass
class Response:
    """What the flow needs of a response: status, headers and, for token requests, the body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    www_authenticate: list[str] = field(default_factory=list)
    body: bytes = b""


def merge_scopes(*groups: Iterable[str]) -> list[str]:
    """Union of scopes, merging the actions of one resource: ``repository:a:pull`` + ``…:push``."""
    resources: dict[str, list[str]] = {}
    for group in groups:
        for scope in group:
            kind, sep, rest = scope.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2:
                resources.setdefault(scope, [])
                continue
            key = f"{kind}:{name}"
            acts = resources.setdefault(key, [])
            for action in actions.split(","):
                if action and action not in acts:
                    acts.append(action)
    out = []
    for key, acts in resources.items():
        out.append(f"{key}:{','.join(sorted(acts))}" if acts else key)
    return sorted(out)


def repository_scope(name: str, *actions: str) -> str:
    """``repository:<name>:<actions>``."""
    return f"repository:{name}:{','.join(actions)}"


def basic_header(cred: Credential) -> str:
    """The ``Authorization`` value for Basic auth."""
    return "Basic " + base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()


def _service(challenge: Challenge) -> str:
    return challenge.params.get("service", "")


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth:
    """Per-process authentication state: credentials lookup, known challenges, cached tokens."""

    def __init__(self, credentials: Callable[[str], Credential] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._credentials = credentials or (lambda host: ANONYMOUS)
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._refresh: dict[tuple[str, str], str] = {}
        self._cred_cache: dict[str, Credential] = {}

    def credential(self, host: str) -> Credential:
        """The credential for ``host`` (looked up once per process)."""
        if host not in self._cred_cache:
            self._cred_cache[host] = self._credentials(host)
        return self._cred_cache[host]

    def set_credential(self, host: str, cred: Credential) -> None:
        """Use ``cred`` for ``host`` from now on (e.g. during ``login``)."""
        self._cred_cache[host] = cred

    # The flow -----------------------------------------------------------------------------

    def flow(self, request: Request, scopes: Iterable[str] = ()) -> Flow:
        """Yield ``request`` (authorized if possible); on a 401, authenticate and yield it once more."""
        host = request.host
        wanted = merge_scopes(scopes)
        known = self._challenges.get(host)
        header: str | None = None
        if known is not None:
            header = yield from self._authorization(host, known, wanted, use_cache=True)
        response = yield self._with_auth(request, header)
        if response.status != 401:
            return response
        challenge = self._pick(parse_www_authenticate(response.www_authenticate))
        if challenge is None:
            return response
        self._challenges[host] = challenge
        if challenge.scheme == "basic":
            if self.credential(host).empty or header is not None and header.startswith("Basic "):
                return response
        retried = yield from self._authorization(host, challenge, merge_scopes(wanted, challenge.scopes), use_cache=False)
        if retried is None:
            return response
        return (yield self._with_auth(request, retried))

    @staticmethod
    def _pick(challenges: list[Challenge]) -> Challenge | None:
        for scheme in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == scheme:
                    return c
        return None

    @staticmethod
    def _with_auth(request: Request, header: str | None) -> Request:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        if header:
            headers["Authorization"] = header
        return replace(request, headers=headers)

    def _authorization(self, host: str, challenge: Challenge, scopes: list[str], *, use_cache: bool) -> Generator[Request, Response, str | None]:
        if challenge.scheme == "basic":
            cred = self.credential(host)
            return None if cred.empty or not cred.username else basic_header(cred)
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        key = (challenge.realm, _service(challenge) or "", tuple(scopes))
        cached = self._tokens.get(key)
        if use_cache and cached is not None and cached.expires_at > self._clock():
            return f"Bearer {cached.value}"
        token = yield from self.fetch_token(host, challenge, scopes)
        return f"Bearer {token}"

    def fetch_token(self, host: str, challenge: Challenge, scopes: list[str]) -> Generator[Request, Response, str]:
        """Get a bearer token for ``scopes`` from the challenge's realm (and cache it)."""
        realm = challenge.realm or ""
        service = _service(challenge) or ""
        cred = self.credential(host)
        refresh = cred.identity_token or self._refresh.get((realm, service), "")
        if refresh:
            form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLIENT_ID}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            response = yield Request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                                     urlencode(form).encode(), is_token_request=True)
        else:
            query: list[tuple[str, str]] = []
            if service:
                query.append(("service", service))
            query += [("scope", s) for s in scopes]
            headers = {}
            if cred.username:
                headers["Authorization"] = basic_header(cred)
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urlencode(query) if query else "")
            response = yield Request("GET", url, headers, is_token_request=True)
        if response.status in (401, 403):
            who = f" as {cred.username}" if cred.username else ""
            hint = f"; run `berth login {host}`" if cred.empty else f"; check the credentials or run `berth login {host}` again"
            raise AuthError(f"unauthorized: the token server for {host} refused{who}{hint}")
        if response.status != 200:
            raise AuthError(f"token server for {host} answered HTTP {response.status} ({realm})")
        value, ttl, new_refresh = parse_token_response(response.body, host)
        if new_refresh:
            self._refresh[(realm, service)] = new_refresh
        self._tokens[(realm, service, tuple(scopes))] = _Token(value, self._clock() + max(ttl - EXPIRY_SLACK, 1.0))
        return value

    # Login -------------------------------------------------------------------------------

    def login_flow(self, base_url: str, cred: Credential) -> Generator[Request, Response, Credential]:
        """Check ``cred`` against the registry at ``base_url``; return what to store.

        For a Bearer registry the OAuth2 password grant is tried first (``access_type=offline``):
        if the token server hands out a refresh token, that identity token is what gets stored.
        """
        host = urlsplit(base_url).netloc
        self.set_credential(host, cred)
        ping = yield Request("GET", base_url.rstrip("/") + "/v2/")
        if ping.status == 200:
            return cred
        if ping.status != 401:
            raise AuthError(f"login to {host} failed: /v2/ answered HTTP {ping.status}")
        challenge = self._pick(parse_www_authenticate(ping.www_authenticate))
        if challenge is None:
            raise AuthError(f"login to {host} failed: the registry sent no usable WWW-Authenticate challenge")
        self._challenges[host] = challenge
        if challenge.scheme == "basic":
            answer = yield Request("GET", base_url.rstrip("/") + "/v2/", {"Authorization": basic_header(cred)})
            if answer.status == 200:
                return cred
            raise AuthError(f"unauthorized: incorrect username or password for {host}")
        realm = challenge.realm or ""
        if cred.identity_token:
            yield from self.fetch_token(host, challenge, [])
            return cred
        form = {"grant_type": "password", "username": cred.username, "password": cred.password,
                "client_id": CLIENT_ID, "access_type": "offline"}
        if _service(challenge):
            form["service"] = _service(challenge)
        answer = yield Request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                               urlencode(form).encode(), is_token_request=True)
        if answer.status == 200:
            _, _, refresh = parse_token_response(answer.body, host)
            if refresh:
                return Credential(cred.username, "", refresh)
            return cred
        if answer.status in (401, 403):
            raise AuthError(f"unauthorized: incorrect username or password for {host}")
        # The token server has no OAuth2 endpoint: fall back to the GET token request with Basic.
        yield from self.fetch_token(host, challenge, [])
        return cred


def parse_token_response(body: bytes, host: str) -> tuple[str, float, str]:
    """(token, lifetime in seconds, refresh token or "") from a token server's JSON answer."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise AuthError(f"the token server for {host} answered with invalid JSON") from None
    if not isinstance(doc, dict):
        raise AuthError(f"the token server for {host} answered with invalid JSON")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError(f"the token server for {host} answered without a token")
    ttl = doc.get("expires_in")
    lifetime = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else DEFAULT_TOKEN_TTL
    refresh = doc.get("refresh_token")
    return token, lifetime, refresh if isinstance(refresh, str) else ""
