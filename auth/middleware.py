"""The auth controller and its thin middleware: authenticate, compare with what is needed, grant or challenge.

:class:`AuthController` owns every auth resource of an app (htpasswd users, the
policy file, trusted token keys, Berth's signing key, the failed-login limiter)
and answers four questions: may this request proceed (:meth:`authorize`, which
raises a :class:`~registry.errors.RegistryError` that carries its own
``WWW-Authenticate`` header), who is the caller (``request[REQUEST_USER]``, set only for a named user),
may the caller see a repository (:meth:`repo_visible`, for the catalog) and
may the caller move an existing tag (:meth:`check_overwrite`).

Outcomes: no or wrong credentials → 401 with a challenge naming every scope the
request needs (``error="invalid_token"`` for a bad token); a valid token lacking a
scope → 401 ``insufficient_scope``; a Basic user the policy refuses → 403 DENIED;
an unreadable or repeated ``Authorization`` header → 400 ``invalid_request``;
too many failed logins from one client → 429 TOOMANYREQUESTS. Passwords, tokens
and keys never reach a log line.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable

from aiohttp import web

from auth.access import CATALOG, OVERWRITE, PULL, REPOSITORY, Access, covers, required_access
from auth.challenge import (
    BasicCredentials,
    BearerToken,
    MalformedAuthorization,
    basic_challenge,
    bearer_challenge,
    parse_authorization,
)
from auth.htpasswd import Htpasswd
from auth.policy import OPEN_POLICY, Policy, parse_policy
from auth.ratelimit import LoginLimiter
from auth.tokens import (
    SigningKey,
    TokenClaims,
    TokenError,
    TokenVerifier,
    TrustedKeys,
    load_or_create_signing_key,
    refresh_audience,
)
from auth.watch import DEFAULT_CHECK_INTERVAL, WatchedFile
from registry.appkeys import REQUEST_USER
from registry.errors import ErrorCode, RegistryError
from registry.reference import is_valid_name

if TYPE_CHECKING:
    from registry.config import Config

log = logging.getLogger("berth.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_PATH = "/auth/token"
JWKS_PATH = "/auth/jwks"
FREE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", TOKEN_PATH, JWKS_PATH})


def credentials(request: web.Request) -> BasicCredentials | BearerToken | None:
    """The request's credentials; Basic with an empty user and password (what containers/image
    sends when it has none) counts as none."""
    creds = parse_authorization(request.headers.getall("Authorization", []))
    if isinstance(creds, BasicCredentials) and not creds.username and not creds.password:
        return None
    return creds


@dataclass(frozen=True)
class Identity:
    """Who made an authorized request: a user (None: anonymous) and, in token mode, the token's claims."""

    user: str | None
    claims: TokenClaims | None = None


IDENTITY: web.RequestKey[Identity] = web.RequestKey("berth.auth.identity", Identity)


class AuthController:
    """Everything auth for one app; built from the config, started in ``cleanup_ctx``."""

    def __init__(self, config: "Config", *, check_interval: float = DEFAULT_CHECK_INTERVAL) -> None:
        auth = config.auth
        self.config = auth  # the ``auth`` section
        self.http_host = config.http.host.rstrip("/")
        self.free_paths = set(FREE_PATHS) | {config.http.debug.prometheus.path}
        self.limiter = LoginLimiter(auth.loginlimit.failures, auth.loginlimit.window)
        self.policy_file: WatchedFile[Policy] | None = None
        if auth.policy is not None:
            path = auth.policy.path
            self.policy_file = WatchedFile(path, lambda data: parse_policy(data, path), what="policy file",
                                           interval=check_interval)
        self.htpasswd: Htpasswd | None = None
        if auth.htpasswd is not None:
            self.htpasswd = Htpasswd(auth.htpasswd.path, interval=check_interval)
        elif auth.token is not None and auth.token.htpasswd:
            self.htpasswd = Htpasswd(auth.token.htpasswd, interval=check_interval)
        self.signing_key: SigningKey | None = None
        self.verifier: TokenVerifier | None = None
        self.refresh_verifier: TokenVerifier | None = None

    # -- lifecycle --

    @property
    def token_mode(self) -> bool:
        """Whether requests carry bearer tokens (else Basic credentials)."""
        return self.config.token is not None

    async def start(self) -> None:
        """Read every file the config names (creating the signing key if missing); raises if one is unusable."""
        from registry.configschema import ConfigError

        key = "auth.htpasswd.path" if self.config.htpasswd is not None else "auth.token.htpasswd"
        for watched, name in ((self.htpasswd, key), (self.policy_file, "auth.policy.path")):
            if watched is None:
                continue
            try:
                await watched.load()
            except OSError as exc:  # name the key, not just the file: the operator edits the config
                raise ConfigError(f"{name}: cannot read {watched.path}: {exc.strerror or exc}") from None
        token = self.config.token
        if token is not None:
            trusted = await asyncio.to_thread(TrustedKeys.from_files, token.rootcertbundle, token.jwks)
            if token.builtin:
                self.signing_key = await asyncio.to_thread(load_or_create_signing_key, token.signingkey)
                if self.signing_key.algorithm not in token.algorithms:
                    raise ValueError(f"auth.token.signingkey signs {self.signing_key.algorithm}, which "
                                     f"auth.token.signingalgorithms does not accept")
                trusted.add_key(self.signing_key.public_key, self.signing_key.kid)
                own = TrustedKeys()
                own.add_key(self.signing_key.public_key, self.signing_key.kid)
                self.refresh_verifier = TokenVerifier(own, issuer=token.issuer_name,
                                                      audience=refresh_audience(token.service_name),
                                                      algorithms=(self.signing_key.algorithm,))
            self.verifier = TokenVerifier(trusted, issuer=token.issuer_name, audience=token.service_name,
                                          algorithms=token.algorithms)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx`` entry: start before serving; nothing to close."""
        await self.start()
        yield

    async def policy(self) -> Policy:
        """The current policy (the file re-read if it changed), or :data:`OPEN_POLICY`."""
        if self.policy_file is None:
            return OPEN_POLICY
        return await self.policy_file.get()

    # -- challenges --

    def realm(self, request: web.Request) -> str:
        """Where clients get credentials checked: the configured realm or, for the built-in service, ours."""
        token = self.config.token
        if token is None:
            assert self.config.htpasswd is not None
            return self.config.htpasswd.realm
        if token.autoredirect:
            return f"{request.scheme}://{request.host}{token.autoredirectpath}"
        if token.realm:
            return token.realm
        base = self.http_host or f"{request.scheme}://{request.host}"
        return base + TOKEN_PATH

    def challenge(self, request: web.Request, needed: list[Access], error: str = "") -> str:
        """The ``WWW-Authenticate`` value for a request needing ``needed``."""
        if self.config.token is None:
            return basic_challenge(self.realm(request))
        return bearer_challenge(self.realm(request), self.config.token.service_name,
                                [a.scope for a in needed], error)

    def unauthorized(self, request: web.Request, needed: list[Access], error: str = "",
                     message: str | None = None) -> RegistryError:
        """401 with the challenge."""
        return RegistryError(ErrorCode.UNAUTHORIZED, message, [a.to_claim() for a in needed] or None,
                             headers={"WWW-Authenticate": self.challenge(request, needed, error)})

    def malformed(self, request: web.Request, exc: MalformedAuthorization) -> RegistryError:
        """400 ``invalid_request`` for an unreadable or repeated ``Authorization`` header."""
        header = (bearer_challenge(self.realm(request), self.config.token.service_name, error="invalid_request")
                  if self.config.token is not None else basic_challenge(self.realm(request)))
        return RegistryError(ErrorCode.UNAUTHORIZED, str(exc), status=400, headers={"WWW-Authenticate": header})

    # -- passwords --

    @staticmethod
    def client_key(request: web.Request) -> str:
        """What failed logins are counted by: the peer address."""
        return request.remote or "unknown"

    def check_rate(self, request: web.Request) -> None:
        """Raise 429 when the client failed to log in too often lately."""
        wait = self.limiter.retry_after(self.client_key(request))
        if wait > 0:
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "too many failed login attempts; retry later",
                                headers={"Retry-After": str(math.ceil(wait))})

    async def check_password(self, request: web.Request, username: str, password: str) -> bool:
        """Verify a password (rate limited; failures counted and logged without the password)."""
        self.check_rate(request)
        ok = self.htpasswd is not None and await self.htpasswd.verify(username, password)
        if not ok:
            self.limiter.failed(self.client_key(request))
            log.warning("failed login for user %r from %s", username[:64], self.client_key(request))
        return ok

    # -- the request path --

    def is_free(self, path: str) -> bool:
        """Paths that never need credentials (health, metrics, the token endpoint)."""
        return path in self.free_paths

    async def authorize(self, request: web.Request) -> Identity:
        """Let the request through (returning who made it) or raise the right error."""
        needed = required_access(request.method, request.path, request.query)
        try:
            creds = credentials(request)
        except MalformedAuthorization as exc:
            raise self.malformed(request, exc) from None
        if self.token_mode:
            identity = await self._authorize_token(request, creds, needed)
        else:
            identity = await self._authorize_basic(request, creds, needed)
        request[IDENTITY] = identity
        if identity.user is not None:
            request[REQUEST_USER] = identity.user
        return identity

    @staticmethod
    def _check_names(needed: list[Access]) -> None:
        for access in needed:
            if access.type == REPOSITORY and not is_valid_name(access.name):
                raise RegistryError(ErrorCode.NAME_INVALID, "invalid repository name", {"name": access.name[:300]})

    async def _authorize_basic(self, request: web.Request, creds: BasicCredentials | BearerToken | None,
                               needed: list[Access]) -> Identity:
        user: str | None = None
        if isinstance(creds, BasicCredentials):
            if not await self.check_password(request, creds.username, creds.password):
                raise self.unauthorized(request, needed, message="invalid username or password")
            user = creds.username
        policy = await self.policy()
        if user is None:
            if not needed or not all(self._policy_allows(policy, None, a) for a in needed):
                raise self.unauthorized(request, needed)
            return Identity(None)
        self._check_names(needed)
        missing = [a for a in needed if not self._policy_allows(policy, user, a)]
        if missing:
            raise RegistryError(ErrorCode.DENIED, None, [a.to_claim() for a in missing])
        return Identity(user)

    @staticmethod
    def _policy_allows(policy: Policy, user: str | None, access: Access) -> bool:
        if access.type == REPOSITORY:
            allowed = policy.actions(user, access.name)
            return all(a in allowed for a in access.actions)
        if access.resource == ("registry", CATALOG):
            return policy.may_list_catalog(user)
        return False

    async def _authorize_token(self, request: web.Request, creds: BasicCredentials | BearerToken | None,
                               needed: list[Access]) -> Identity:
        if not isinstance(creds, BearerToken):
            raise self.unauthorized(request, needed)
        assert self.verifier is not None, "auth controller not started"
        try:
            claims = self.verifier.verify(creds.token)
        except TokenError as exc:
            log.info("rejected bearer token from %s: %s", self.client_key(request), exc)
            raise self.unauthorized(request, needed, "invalid_token", str(exc)) from None
        self._check_names(needed)
        for access in needed:
            granted = claims.actions(access.type, access.name)
            if not all(covers(granted, a) for a in access.actions):
                raise self.unauthorized(request, needed, "insufficient_scope",
                                        "token does not grant the access this request needs")
        return Identity(claims.subject or None, claims)

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The middleware body (see :func:`make_middleware`)."""
        if not self.is_free(request.path):
            await self.authorize(request)
        return await handler(request)

    # -- hooks the registry calls --

    async def repo_visible(self, request: web.Request, repository: str) -> bool:
        """Whether the caller may pull ``repository`` (the catalog lists only those)."""
        identity: Identity | None = request.get(IDENTITY)
        user = identity.user if identity is not None else None
        return PULL in (await self.policy()).actions(user, repository)

    async def pull_filter(self, request: web.Request) -> Callable[[str], bool] | None:
        """What the caller may pull, for an automatic mount: None for everything, else a predicate.

        Without a policy file every named user may pull everything (the open policy); with
        one, the policy decides per repository, as for the catalog.
        """
        identity: Identity | None = request.get(IDENTITY)
        user = identity.user if identity is not None else None
        if self.policy_file is None and user is not None:
            return None
        policy = await self.policy()
        return lambda repository: PULL in policy.actions(user, repository)

    async def check_overwrite(self, request: web.Request, repository: str, tag: str) -> None:
        """Raise DENIED unless the caller may move ``tag`` (which exists) to another manifest.

        The policy decides. Without a policy file, tag moves are as free as pushes
        (registry:2's behaviour): a request that got here was already allowed to push.
        """
        if self.policy_file is None:
            return
        identity: Identity | None = request.get(IDENTITY)
        user = identity.user if identity is not None else None
        if OVERWRITE not in (await self.policy()).actions(user, repository):
            raise RegistryError(ErrorCode.DENIED, f"tag {tag} already exists and may not be overwritten",
                                {"repository": repository, "tag": tag})


CONTROLLER: web.AppKey[AuthController] = web.AppKey("berth.auth.controller", AuthController)


def make_middleware(controller: AuthController) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The aiohttp middleware that runs :meth:`AuthController.authorize` on every non-free path."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await controller.middleware(request, handler)

    return auth_middleware
