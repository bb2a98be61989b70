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

Access tokens (:mod:`auth.pat`) work wherever a password does: as the Basic password, and at
the token service, whose JWTs then carry the token id (``pat``) so that a revoked access
token stops its JWTs too (checked against storage at most a second old). Whatever a request
presents, an access token grants at most its scopes intersected with its owner's policy. A
token reaches ``/admin/`` and ``/api/`` only with the ``admin`` scope; in token mode those
paths also take Basic credentials (people and scripts managing tokens).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
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
from auth.pat import TokenRecord, TokenRefused, TokenStore, looks_like_token, owner_actions
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
from registry.appkeys import REQUEST_USER, STORAGE
from registry.errors import ErrorCode, RegistryError
from registry.reference import is_valid_name

if TYPE_CHECKING:
    from registry.config import Config

log = logging.getLogger("berth.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_PATH = "/auth/token"
JWKS_PATH = "/auth/jwks"
FREE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", TOKEN_PATH, JWKS_PATH})
MANAGEMENT_PREFIXES = ("/admin/", "/api/")
PAT_CLAIM = "pat"  # the access token a JWT was issued for


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
    token: TokenRecord | None = None  # the access token the caller authenticated with

    @property
    def actor(self) -> str:
        """Who acted, for audit lines: the user (or robot), and the access token id if one was used."""
        if self.user is None:
            return "anonymous"
        return f"{self.user} (token {self.token.id})" if self.token is not None else self.user


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
        self.tokens: TokenStore | None = None  # access tokens, once the storage is open
        self.on_login: Callable[[web.Request, str, str, str], None] | None = None  # (request, user, outcome, reason)

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
        if STORAGE in app:
            self.tokens = TokenStore(app[STORAGE])
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

    def challenge(self, request: web.Request, needed: list[Access], error: str = "", description: str = "") -> str:
        """The ``WWW-Authenticate`` value for a request needing ``needed``."""
        if self.config.token is None:
            return basic_challenge(self.realm(request))
        return bearer_challenge(self.realm(request), self.config.token.service_name,
                                [a.scope for a in needed], error, description)

    def unauthorized(self, request: web.Request, needed: list[Access], error: str = "",
                     message: str | None = None, description: str = "") -> RegistryError:
        """401 with the challenge (``description``: the challenge's ``error_description``)."""
        return RegistryError(ErrorCode.UNAUTHORIZED, message, [a.to_claim() for a in needed] or None,
                             headers={"WWW-Authenticate": self.challenge(request, needed, error, description)})

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
            self.login_event(request, username, "failure", "invalid username or password")
        return ok

    def login_event(self, request: web.Request, actor: str, outcome: str, reason: str = "") -> None:
        """Tell the audit log (if any) about a login attempt (``actor``: the account, maybe with a token id)."""
        if self.on_login is not None:
            self.on_login(request, actor[:100], outcome, reason)

    async def check_credentials(self, request: web.Request, username: str,
                                password: str) -> tuple[str, TokenRecord | None]:
        """The account a password or access token logs in as (and the token), or 401 with the reason."""
        if looks_like_token(password):
            self.check_rate(request)
            if self.tokens is None:
                raise RegistryError(ErrorCode.UNAUTHORIZED, "access tokens are not available")
            try:
                record = await self.tokens.authenticate(password, username)
                if await self.owner_gone(record):
                    raise TokenRefused("the token's owner no longer exists")
            except TokenRefused as exc:
                self.limiter.failed(self.client_key(request))
                log.warning("refused access token for %r from %s: %s", username[:64], self.client_key(request), exc)
                self.login_event(request, username, "failure", str(exc))
                raise RegistryError(ErrorCode.UNAUTHORIZED, str(exc),
                                    headers={"WWW-Authenticate": basic_challenge(self.realm(request))}) from None
            return record.owner, record
        if not await self.check_password(request, username, password):
            raise RegistryError(ErrorCode.UNAUTHORIZED, "invalid username or password",
                                headers={"WWW-Authenticate": basic_challenge(self.realm(request))})
        return username, None

    async def owner_gone(self, record: TokenRecord) -> bool:
        """Whether a user's token outlived the user (removed from the htpasswd file); robots never do."""
        if record.robot or self.htpasswd is None:
            return False
        return record.owner not in (await self.htpasswd.users()).hashes

    def token_actions(self, policy: Policy, record: TokenRecord, repository: str) -> frozenset[str]:
        """What an access token grants on ``repository``: its scopes ∩ its owner's policy."""
        owner = owner_actions(policy, record.owner, repository, has_policy=self.policy_file is not None)
        return owner & record.scope_actions(repository)

    def actions_for(self, policy: Policy, identity: Identity | None, repository: str) -> frozenset[str]:
        """The repository actions of a caller (a token's intersection when one was used)."""
        user = identity.user if identity is not None else None
        if identity is not None and identity.token is not None:
            return self.token_actions(policy, identity.token, repository)
        return policy.actions(user, repository)

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
        management = request.path.startswith(MANAGEMENT_PREFIXES)
        if self.token_mode and not (management and isinstance(creds, BasicCredentials)):
            identity = await self._authorize_token(request, creds, needed)
        else:
            identity = await self._authorize_basic(request, creds, needed)
        if management and identity.token is not None and not identity.token.admin:
            raise RegistryError(ErrorCode.DENIED, "this access token has no admin scope", {"token": identity.token.id})
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
        record: TokenRecord | None = None
        if isinstance(creds, BasicCredentials):
            try:
                user, record = await self.check_credentials(request, creds.username, creds.password)
            except RegistryError as exc:
                if exc.code != ErrorCode.UNAUTHORIZED:
                    raise
                raise self.unauthorized(request, needed, message=exc.message) from None
        policy = await self.policy()
        identity = Identity(user, token=record)
        if user is None:
            if not needed or not all(self._policy_allows(policy, identity, a) for a in needed):
                raise self.unauthorized(request, needed)
            return identity
        self._check_names(needed)
        missing = [a for a in needed if not self._policy_allows(policy, identity, a)]
        if missing:
            request[IDENTITY] = identity  # who was denied (for the audit log)
            raise RegistryError(ErrorCode.DENIED, "this access token does not grant the access this request needs"
                                if record is not None else None, [a.to_claim() for a in missing])
        if request.method == "GET" and request.path in ("/v2", "/v2/"):
            self.login_event(request, identity.actor, "success")  # what docker/podman/skopeo login request
        return identity

    def _policy_allows(self, policy: Policy, identity: Identity, access: Access) -> bool:
        if access.type == REPOSITORY:
            allowed = self.actions_for(policy, identity, access.name)
            return all(a in allowed for a in access.actions)
        if access.resource == ("registry", CATALOG):
            return policy.may_list_catalog(identity.user)
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
        record: TokenRecord | None = None
        pat = claims.extra.get(PAT_CLAIM)
        if isinstance(pat, str) and pat:
            # Issued for an access token: it must still be valid (revocation reaches JWTs too).
            record = await self.tokens.cached(pat) if self.tokens is not None else None
            reason = "access token unknown" if record is None else record.refusal(time.time())
            if not reason and record is not None and await self.owner_gone(record):
                reason = "the token's owner no longer exists"
            if reason:
                raise self.unauthorized(request, needed, "invalid_token", reason, description=reason)
        self._check_names(needed)
        for access in needed:
            granted = claims.actions(access.type, access.name)
            if not all(covers(granted, a) for a in access.actions):
                raise self.unauthorized(request, needed, "insufficient_scope",
                                        "token does not grant the access this request needs")
        return Identity(claims.subject or None, claims, record)

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The middleware body (see :func:`make_middleware`)."""
        if not self.is_free(request.path):
            await self.authorize(request)
        return await handler(request)

    # -- hooks the registry calls --

    async def repo_visible(self, request: web.Request, repository: str) -> bool:
        """Whether the caller may pull ``repository`` (the catalog lists only those)."""
        identity: Identity | None = request.get(IDENTITY)
        return PULL in self.actions_for(await self.policy(), identity, repository)

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
        if OVERWRITE not in self.actions_for(await self.policy(), identity, repository):
            raise RegistryError(ErrorCode.DENIED, f"tag {tag} already exists and may not be overwritten",
                                {"repository": repository, "tag": tag})


CONTROLLER: web.AppKey[AuthController] = web.AppKey("berth.auth.controller", AuthController)


def make_middleware(controller: AuthController) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The aiohttp middleware that runs :meth:`AuthController.authorize` on every non-free path."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await controller.middleware(request, handler)

    return auth_middleware
