"""The registry HTTP client: one aiohttp session, the auth flow, the Distribution API calls.

Owns talking to registries: choosing the scheme, driving
:meth:`~registry.client.authflow.RegistryAuth.flow` for every request, and
turning network failures and registry error bodies into the typed
:mod:`registry.client.errors` with one actionable line each. Bodies stream:
nothing here reads a blob into memory.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import urlencode, urljoin

import aiohttp

from registry import mediatypes as mt
from registry.client.authflow import RegistryAuth, Request, Response, repository_scope
from registry.client.credentials import Credential
from registry.client.errors import AuthError, ClientError, DigestMismatch, NetworkError, NotFound, RegistryResponseError
from registry.digest import Digest
from registry.reference import Reference

# The scheme, as docker chooses it: HTTPS (system CAs plus ``--ca-file`` and
# ``/etc/docker/certs.d/<host>/ca.crt``) everywhere, except
# * loopback hosts (``localhost``, ``127.0.0.0/8``, ``[::1]``) without flags: plain HTTP first;
#   when the connection is dropped there (a TLS listener), verified HTTPS, so an untrusted
#   certificate says so and names --ca-file and --insecure;
# * ``--insecure``: HTTPS without verification first, then plain HTTP if the TLS handshake fails
#   (on loopback too, so ``--insecure`` reaches a self-signed TLS registry on 127.0.0.1);
# * ``--ca-file`` on loopback: verified HTTPS.
# The first scheme that answers is kept for the host for the rest of the process.

MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_V2])
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
PLAIN_HTTP_HOSTS = ("localhost", "127.0.0.1", "[::1]")
USER_AGENT = "berth-client/0.1"

BodyFactory = Callable[[], Any]


@dataclass(frozen=True)
class TransportOptions:
    """How to reach registries."""

    insecure: bool = False
    ca_file: str | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 300.0


def is_plain_http_host(host: str) -> bool:
    """Hosts docker talks to over plain HTTP without being told (loopback names)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host.startswith("[") and "]:" in host:
        name = host[: host.index("]") + 1]
    return name in PLAIN_HTTP_HOSTS or name.startswith("127.")


@dataclass
class ManifestResult:
    """A manifest as fetched: exact bytes, media type and digest (verified)."""

    data: bytes
    media_type: str
    digest: Digest


def _error_detail(body: bytes) -> tuple[str | None, str]:
    try:
        doc = json.loads(body)
        first = doc["errors"][0]
        code = str(first.get("code") or "") or None
        message = str(first.get("message") or "")
        return code, message
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body.decode(errors="replace").strip().splitlines()
        return None, text[0][:200] if text else ""


def _insufficient_scope(challenges: list[str]) -> bool:
    """Whether a 401 says the (valid) token lacks a scope rather than that the login failed."""
    from auth.challenge import parse_www_authenticate

    return any(c.scheme == "bearer" and c.params.get("error") == "insufficient_scope"
               for c in parse_www_authenticate(challenges))


class RegistryClient:
    """Async client for the Distribution API of any registry (use ``async with``)."""

    def __init__(self, auth: RegistryAuth | None = None, options: TransportOptions | None = None) -> None:
        self.auth = auth or RegistryAuth()
        self.options = options or TransportOptions()
        self._session: aiohttp.ClientSession | None = None
        self._schemes: dict[str, str] = {}
        self._ssl: dict[str, ssl.SSLContext | bool] = {}

    async def __aenter__(self) -> "RegistryClient":
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout,
                                        sock_read=self.options.read_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT},
                                              connector=aiohttp.TCPConnector(limit=32), auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open aiohttp session."""
        if self._session is None:
            raise RuntimeError("RegistryClient used outside `async with`")
        return self._session

    # Plumbing ------------------------------------------------------------------------------

    def base_url(self, host: str) -> str:
        """``scheme://host`` for a registry host."""
        scheme = self._schemes.get(host)
        if scheme is None:
            plain_first = is_plain_http_host(host) and not self.options.ca_file and not self.options.insecure
            scheme = "http" if plain_first else "https"
        return f"{scheme}://{host}"

    def _fallback(self, request: Request, host: str, exc: BaseException) -> str | None:
        """The other scheme to try after ``exc`` on the first contact with ``host``, or None."""
        if host in self._schemes or request.host != host or isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return None
        if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, aiohttp.ClientConnectorSSLError):
            return None  # nothing listens (refused, unreachable): the other scheme will not help
        if request.url.startswith("https://") and self.options.insecure:
            return "http"
        if request.url.startswith("http://") and is_plain_http_host(host) and not self.options.insecure:
            return "https"
        return None

    def _ssl_for(self, host: str) -> ssl.SSLContext | bool:
        if host in self._ssl:
            return self._ssl[host]
        result: ssl.SSLContext | bool
        if self.options.insecure:
            result = False
        else:
            ctx = ssl.create_default_context()
            if self.options.ca_file:
                try:
                    ctx.load_verify_locations(cafile=self.options.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ClientError(f"cannot load CA file {self.options.ca_file}: {exc}") from None
            certs_d = f"/etc/docker/certs.d/{host}/ca.crt"
            if os.path.exists(certs_d):
                ctx.load_verify_locations(cafile=certs_d)
            result = ctx
        self._ssl[host] = result
        return result

    def network_error(self, host: str, exc: BaseException) -> NetworkError:
        """The one-line :class:`NetworkError` for an aiohttp/OS failure talking to ``host``."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return NetworkError(f"TLS certificate of {host} is not trusted ({exc.certificate_error}); "
                                f"pass --ca-file FILE, or --insecure to skip verification")
        if isinstance(exc, aiohttp.ClientConnectorSSLError) or isinstance(exc, ssl.SSLError):
            return NetworkError(f"TLS handshake with {host} failed; if it serves plain HTTP, pass --insecure")
        if isinstance(exc, aiohttp.ClientConnectorError):
            os_error = exc.os_error
            if getattr(os_error, "errno", None) == errno.ECONNREFUSED or "refused" in str(os_error).lower():
                return NetworkError(f"cannot connect to {host}: connection refused (is the registry running?)")
            return NetworkError(f"cannot connect to {host}: {os_error.strerror or os_error}")
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return NetworkError(f"{host} did not answer in time")
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return NetworkError(f"{host} closed the connection unexpectedly")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return NetworkError(f"the transfer from {host} was cut off ({exc})")
        return NetworkError(f"network error talking to {host}: {exc.__class__.__name__}: {exc}")

    async def _request(self, request: Request, host: str) -> aiohttp.ClientResponse:
        body = request.body() if callable(request.body) else request.body
        return await self.session.request(request.method, request.url, headers=request.headers, data=body,
                                          ssl=self._ssl_for(host), allow_redirects=True)

    async def _send(self, request: Request, host: str) -> aiohttp.ClientResponse:
        try:
            response = await self._request(request, host)
        except (aiohttp.ClientConnectorSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            scheme = self._fallback(request, host, exc)
            if scheme is None:
                raise self.network_error(host, exc) from None
            first = request.url.split("://", 1)[0]
            request.url = f"{scheme}://{request.url.split('://', 1)[1]}"
            try:
                response = await self._request(request, host)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as again:
                raise self._both_failed(host, first, exc, scheme, again) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self.network_error(host, exc) from None
        if request.host == host:
            self._schemes.setdefault(host, request.url.split("://", 1)[0])
        return response

    def _both_failed(self, host: str, first: str, first_exc: BaseException, second: str,
                     second_exc: BaseException) -> NetworkError:
        if isinstance(second_exc, aiohttp.ClientConnectorCertificateError):
            return NetworkError(f"{host} serves HTTPS with a certificate that is not trusted "
                                f"({second_exc.certificate_error}); pass --ca-file FILE to trust it, "
                                f"or --insecure to skip verification")
        return NetworkError(f"cannot talk to {host} over {first} ({self.network_error(host, first_exc)}) "
                            f"nor over {second} ({self.network_error(host, second_exc)})")

    async def _drive(self, request: Request, scopes: Iterable[str]) -> aiohttp.ClientResponse:
        """Run the auth flow for ``request``; return the final (unreleased) response."""
        host = request.host
        flow = self.auth.flow(request, scopes)
        current = next(flow)
        while True:
            target_host = current.host
            raw = await self._send(current, target_host)
            if current.is_token_request:
                try:
                    body = await raw.content.read(1024 * 1024)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raise self.network_error(target_host, exc) from None
                finally:
                    raw.release()
                answer = Response(raw.status, raw.headers, raw.headers.getall("WWW-Authenticate", []), body)
            else:
                answer = Response(raw.status, raw.headers, raw.headers.getall("WWW-Authenticate", []))
            try:
                current = flow.send(answer)
            except StopIteration:
                if current.is_token_request:  # pragma: no cover - the flow always ends on the real request
                    raise ClientError(f"authentication with {host} ended unexpectedly") from None
                return raw
            raw.release()

    @asynccontextmanager
    async def open(self, method: str, host: str, path: str, *, scopes: Iterable[str] = (),
                   headers: dict[str, str] | None = None, body: Any = None, what: str = "",
                   ok: Iterable[int] = (200,), not_found: str | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield the response if its status is in ``ok``; raise a typed error otherwise."""
        url = path if path.startswith(("http://", "https://")) else self.base_url(host) + path
        response = await self._drive(Request(method, url, dict(headers or {}), body), scopes)
        try:
            if response.status not in tuple(ok):
                await self._raise_for(response, host, what, not_found)
            yield response
        finally:
            response.release()

    async def _raise_for(self, response: aiohttp.ClientResponse, host: str, what: str, not_found: str | None) -> None:
        try:
            body = await response.content.read(64 * 1024) if response.method != "HEAD" else b""
        except (aiohttp.ClientError, asyncio.TimeoutError):
            body = b""
        code, message = _error_detail(body)
        status = response.status
        subject = f" ({what})" if what else ""
        if status == 401:
            cred = self.auth.credential(host)
            if not cred.empty and _insufficient_scope(response.headers.getall("WWW-Authenticate", [])):
                # The token server knew the user but granted less than asked: a refusal, as 403 is.
                raise AuthError(f"denied: {host} refused access{subject}: {cred.username or 'this login'} "
                                f"may not do this" + (f" ({message})" if message else ""))
            if cred.empty:
                raise AuthError(f"unauthorized: {host} requires authentication{subject}; run `berth login {host}`")
            raise AuthError(f"unauthorized: {host} rejected the credentials{subject}; run `berth login {host}` again")
        if status == 403:
            raise AuthError(f"denied: {host} refused access{subject}" + (f": {message}" if message else ""))
        if status == 404 and not_found:
            raise NotFound(not_found)
        if status == 404:
            label = (code or "not found").lower().replace("_", " ")
            raise NotFound(f"{label}: {what or host}")
        detail = f"{code}: {message}" if code else (message or "no details")
        raise RegistryResponseError(f"{host} answered HTTP {status}{subject}: {detail}", status, code)

    async def login(self, host: str, cred: Credential) -> Credential:
        """Check ``cred`` against ``host`` (see :meth:`RegistryAuth.login_flow`); returns what to store."""
        flow = self.auth.login_flow(self.base_url(host), cred)
        request = next(flow)
        while True:
            raw = await self._send(request, request.host)
            try:
                body = await raw.content.read(1024 * 1024) if request.is_token_request else b""
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise self.network_error(request.host, exc) from None
            finally:
                raw.release()
            answer = Response(raw.status, raw.headers, raw.headers.getall("WWW-Authenticate", []), body)
            try:
                request = flow.send(answer)
            except StopIteration as stop:
                result: Credential = stop.value
                return result

    # Manifests -----------------------------------------------------------------------------

    async def get_manifest(self, ref: Reference, accept: str = MANIFEST_ACCEPT) -> ManifestResult:
        """Fetch a manifest's exact bytes; the digest is computed and checked against ``ref.digest``."""
        host, repo = ref.api_host, ref.repository
        async with self.open("GET", host, f"/v2/{repo}/manifests/{ref.identifier}", scopes=[repository_scope(repo, "pull")],
                             headers={"Accept": accept}, what=str(ref),
                             not_found=f"manifest unknown: {ref} not found in {ref.registry}") as resp:
            length = resp.content_length
            if length is not None and length > MAX_MANIFEST_SIZE:
                raise RegistryResponseError(f"manifest of {ref} is larger than {MAX_MANIFEST_SIZE} bytes")
            try:
                data = await resp.content.read(MAX_MANIFEST_SIZE + 1)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise self.network_error(host, exc) from None
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryResponseError(f"manifest of {ref} is larger than {MAX_MANIFEST_SIZE} bytes")
        algorithm = ref.digest.algorithm if ref.digest else "sha256"
        digest = Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatch(f"digest mismatch: manifest {ref} from {ref.registry} hashes to {digest}")
        try:
            doc = json.loads(data)
            declared = doc.get("mediaType") if isinstance(doc, dict) else None
        except ValueError:
            raise RegistryResponseError(f"manifest of {ref} is not valid JSON") from None
        if isinstance(declared, str) and declared:
            media_type = declared
        elif media_type in ("", "application/json", "text/plain", "application/octet-stream"):
            media_type = mt.OCI_INDEX if isinstance(doc, dict) and "manifests" in doc else mt.OCI_MANIFEST
        return ManifestResult(data, media_type, digest)

    async def head_manifest(self, ref: Reference) -> tuple[Digest, str, int] | None:
        """(digest, media type, size) of a manifest, or None when it does not exist."""
        host, repo = ref.api_host, ref.repository
        async with self.open("HEAD", host, f"/v2/{repo}/manifests/{ref.identifier}", scopes=[repository_scope(repo, "pull")],
                             headers={"Accept": MANIFEST_ACCEPT}, what=str(ref), ok=(200, 404)) as resp:
            if resp.status == 404:
                return None
            digest_header = resp.headers.get("Docker-Content-Digest")
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            size = int(resp.headers.get("Content-Length") or 0)
        if not digest_header:
            result = await self.get_manifest(ref)
            return result.digest, result.media_type, len(result.data)
        return Digest.parse(digest_header), media_type, size

    async def put_manifest(self, host: str, repo: str, reference: str, data: bytes, media_type: str) -> Digest:
        """PUT a manifest under a tag or digest; returns its digest (as computed locally)."""
        async with self.open("PUT", host, f"/v2/{repo}/manifests/{reference}", scopes=[repository_scope(repo, "pull", "push")],
                             headers={"Content-Type": media_type}, body=data, what=f"push manifest {host}/{repo}:{reference}",
                             ok=(200, 201, 202)):
            pass
        return Digest.from_bytes(data)

    async def delete_manifest(self, host: str, repo: str, reference: str) -> int:
        """DELETE a manifest by tag or digest; returns the HTTP status (202 when deleted)."""
        async with self.open("DELETE", host, f"/v2/{repo}/manifests/{reference}", scopes=[repository_scope(repo, "delete")],
                             what=f"delete {host}/{repo}:{reference}", ok=(200, 202, 400, 405),
                             not_found=f"manifest unknown: {host}/{repo}{'@' if ':' in reference else ':'}{reference} not found") as resp:
            return resp.status

    # Blobs ---------------------------------------------------------------------------------

    async def blob_size(self, host: str, repo: str, digest: Digest, scopes: Iterable[str] | None = None) -> int | None:
        """The size of a blob in a repository, or None when the registry does not have it there."""
        async with self.open("HEAD", host, f"/v2/{repo}/blobs/{digest}", scopes=scopes or [repository_scope(repo, "pull")],
                             what=f"{host}/{repo}@{digest}", ok=(200, 404)) as resp:
            if resp.status == 404:
                return None
            return int(resp.headers.get("Content-Length") or -1)

    @asynccontextmanager
    async def open_blob(self, host: str, repo: str, digest: Digest, offset: int = 0) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET a blob (from ``offset`` with a Range request); yields the 200/206 response."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.open("GET", host, f"/v2/{repo}/blobs/{digest}", scopes=[repository_scope(repo, "pull")], headers=headers,
                             what=f"{host}/{repo}@{digest}", ok=(200, 206),
                             not_found=f"blob unknown: {digest} not found in {host}/{repo}") as resp:
            yield resp

    async def start_upload(self, host: str, repo: str, *, mount: Digest | None = None, from_repo: str | None = None) -> str | None:
        """POST an upload; returns its location, or None when a cross-repository mount succeeded."""
        query = ""
        scopes = [repository_scope(repo, "pull", "push")]
        if mount is not None and from_repo:
            query = "?" + urlencode({"mount": str(mount), "from": from_repo})
            scopes.append(repository_scope(from_repo, "pull"))
        async with self.open("POST", host, f"/v2/{repo}/blobs/uploads/{query}", scopes=scopes,
                             headers={"Content-Length": "0"}, what=f"upload to {host}/{repo}", ok=(201, 202)) as resp:
            if resp.status == 201 and mount is not None:
                return None
            location = resp.headers.get("Location")
        if not location:
            raise RegistryResponseError(f"{host} started an upload without a Location header")
        return urljoin(self.base_url(host) + "/", location)

    async def upload_chunk(self, host: str, repo: str, location: str, start: int, length: int, body: BodyFactory) -> str:
        """PATCH ``length`` bytes at ``start`` into an upload; returns the next location."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{start}-{start + length - 1}"}
        async with self.open("PATCH", host, location, scopes=[repository_scope(repo, "pull", "push")], headers=headers,
                             body=body, what=f"upload to {host}/{repo}", ok=(202, 204)) as resp:
            new = resp.headers.get("Location") or location
        return urljoin(self.base_url(host) + "/", new)

    async def finish_upload(self, host: str, repo: str, location: str, digest: Digest, *, length: int = 0,
                            body: BodyFactory | None = None) -> None:
        """PUT ``?digest=`` to complete an upload (with the whole blob as body when given)."""
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}{urlencode({'digest': str(digest)})}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length if body is not None else 0)}
        async with self.open("PUT", host, url, scopes=[repository_scope(repo, "pull", "push")], headers=headers,
                             body=body, what=f"upload {digest} to {host}/{repo}", ok=(201, 204)):
            pass

    async def cancel_upload(self, host: str, repo: str, location: str) -> None:
        """Best-effort DELETE of an unfinished upload."""
        try:
            async with self.open("DELETE", host, location, scopes=[repository_scope(repo, "pull", "push")],
                                 ok=(200, 202, 204, 404, 405)):
                pass
        except ClientError:
            pass

    # Tags ----------------------------------------------------------------------------------

    async def list_tags(self, host: str, repo: str, page_size: int = 1000) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n={page_size}"
        pages = 0
        while path and pages < 10_000:
            pages += 1
            async with self.open("GET", host, path, scopes=[repository_scope(repo, "pull")], what=f"{host}/{repo}",
                                 not_found=f"repository unknown: {host}/{repo} does not exist") as resp:
                try:
                    doc = json.loads(await resp.content.read(16 * 1024 * 1024))
                except (ValueError, aiohttp.ClientError) as exc:
                    raise RegistryResponseError(f"{host} answered the tag list of {repo} with invalid JSON ({exc})") from None
                link = resp.headers.get("Link")
            tags.extend(t for t in (doc.get("tags") or []) if isinstance(t, str))
            path = None
            if link and 'rel="next"' in link:
                target = link.split(";")[0].strip().strip("<>")
                path = target
        return tags


async def gather_or_cancel(coros: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run ``coros`` concurrently; on the first failure cancel the rest, wait for them, re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def retrying(op: Callable[[], Awaitable[Any]], attempts: int = 3, delay: float = 0.5) -> Any:
    """Run ``op`` again after network errors (bounded)."""
    for attempt in range(attempts):
        try:
            return await op()
        except NetworkError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay * (2 ** attempt))
    raise AssertionError("unreachable")
